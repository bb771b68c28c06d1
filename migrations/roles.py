"""The roles of SPEC §7, provisioned on the bootstrap connection before any DDL runs.

Every statement here is issued only when what it sets is not already so: PostgreSQL 15
refuses `ALTER ROLE ... NOSUPERUSER` (and the like) to a non-superuser even when nothing
would change, so a re-run as the (non-superuser) owner must name nothing it cannot change.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, text

from migrations.settings import MigrateSettings

# Attributes no tenantkit role may hold. LOGIN is wanted: each role has its own password.
_FORBIDDEN = {
    "rolsuper": "SUPERUSER",
    "rolcreaterole": "CREATEROLE",
    "rolcreatedb": "CREATEDB",
    "rolreplication": "REPLICATION",
    "rolbypassrls": "BYPASSRLS",
}
# The services' role: a statement may not outlive the gateway's 5 s answer, and a transaction
# left open (a crashed request) must not hold its locks and connection for long.
APP_ROLE_SETTINGS = {"statement_timeout": "4s", "idle_in_transaction_session_timeout": "5s"}


class RoleProvisioningError(Exception):
    """The bootstrap connection cannot bring the roles to the layout: the one line to print."""


@dataclass(frozen=True, slots=True)
class Role:
    name: str
    password: str | None


def _roles(settings: MigrateSettings) -> list[Role]:
    urls = [settings.role_url(s) for s in ("OWNER_DATABASE_URL", "GATEWAY_DATABASE_URL")]
    urls.append(settings.app_url())
    names = [settings.owner_role, settings.gateway_role, settings.app_role]
    return [
        Role(name, str(url.password) if url.password is not None else None)
        for name, url in zip(names, urls, strict=True)
    ]


def _literal(conn: Connection, value: str) -> str:
    return str(conn.execute(text("SELECT quote_literal(:v)"), {"v": value}).scalar_one())


def _can_manage_roles(conn: Connection) -> bool:
    row = conn.execute(
        text("SELECT rolsuper OR rolcreaterole FROM pg_roles WHERE rolname = current_user")
    ).scalar_one()
    return bool(row)


def ensure_role(conn: Connection, role: Role) -> None:
    """Create `role`, or change only what differs: attributes, then password."""
    row = (
        conn.execute(
            text(
                "SELECT rolcanlogin, rolsuper, rolcreaterole, rolcreatedb, rolreplication, "
                "rolbypassrls FROM pg_roles WHERE rolname = :r"
            ),
            {"r": role.name},
        )
        .mappings()
        .first()
    )
    manage = _can_manage_roles(conn)
    if row is None:
        if not manage:
            raise RoleProvisioningError(
                f"role {role.name} does not exist and DATABASE_URL's user may not create roles; "
                "run migrations once with a superuser's DATABASE_URL"
            )
        conn.execute(text(f'CREATE ROLE "{role.name}" LOGIN'))
        wrong = []
    else:
        wrong = [f"NO{attr}" for column, attr in _FORBIDDEN.items() if row[column]]
        if not row["rolcanlogin"]:
            wrong.append("LOGIN")
    if wrong:
        if not manage:
            raise RoleProvisioningError(
                f"role {role.name} needs {' '.join(wrong)} and DATABASE_URL's user may not "
                "change it; run migrations with a superuser's DATABASE_URL"
            )
        conn.execute(text(f'ALTER ROLE "{role.name}" {" ".join(wrong)}'))
    # Set on every run that may (the URL is the truth); a run that may not manage roles (the
    # owner's) leaves the passwords a superuser's run set.
    if role.password is not None and manage:
        conn.execute(text(f'ALTER ROLE "{role.name}" PASSWORD {_literal(conn, role.password)}'))


def _grant_membership(conn: Connection, owner: str) -> None:
    """A bootstrap user that is not the owner must be able to SET ROLE to it."""
    member = conn.execute(
        text("SELECT pg_has_role(current_user, :r, 'USAGE')"), {"r": owner}
    ).scalar_one()
    if not member:
        conn.execute(text(f'GRANT "{owner}" TO current_user'))


def _database_grants(conn: Connection, owner: str, gateway: str, app: str) -> None:
    database = conn.execute(text("SELECT current_database()")).scalar_one()
    has = "SELECT has_database_privilege(:r, current_database(), :p)"
    for role in (owner, gateway, app):
        if not conn.execute(text(has), {"r": role, "p": "CONNECT"}).scalar_one():
            conn.execute(text(f'GRANT CONNECT ON DATABASE "{database}" TO "{role}"'))
    # PUBLIC holds TEMPORARY by default; a temp table can shadow a table a definer function
    # names (issue 15). No tenantkit role needs temp tables, so no one gets it back.
    public_temp = conn.execute(
        text(
            "SELECT EXISTS (SELECT 1 FROM pg_database d, "
            "aclexplode(coalesce(d.datacl, acldefault('d', d.datdba))) a "
            "WHERE d.datname = current_database() AND a.grantee = 0 "
            "AND a.privilege_type = 'TEMPORARY')"
        )
    ).scalar_one()
    if public_temp:
        conn.execute(text(f'REVOKE TEMPORARY ON DATABASE "{database}" FROM PUBLIC'))
    for role in (gateway, app):
        if conn.execute(text(has), {"r": role, "p": "TEMPORARY"}).scalar_one():
            conn.execute(text(f'REVOKE TEMPORARY ON DATABASE "{database}" FROM "{role}"'))


def _schema_grants(conn: Connection, owner: str, gateway: str, app: str) -> None:
    has = "SELECT has_schema_privilege(:r, 'public', :p)"
    if not conn.execute(text(has), {"r": owner, "p": "CREATE"}).scalar_one():
        conn.execute(text(f'GRANT USAGE, CREATE ON SCHEMA public TO "{owner}"'))
    # Before PostgreSQL 15 every role may create objects in public: none but the owner should.
    public_create = conn.execute(
        text(
            "SELECT EXISTS (SELECT 1 FROM pg_namespace n, "
            "aclexplode(coalesce(n.nspacl, acldefault('n', n.nspowner))) a "
            "WHERE n.nspname = 'public' AND a.grantee = 0 AND a.privilege_type = 'CREATE')"
        )
    ).scalar_one()
    if public_create:
        conn.execute(text("REVOKE CREATE ON SCHEMA public FROM PUBLIC"))
    for role in (gateway, app):
        if not conn.execute(text(has), {"r": role, "p": "USAGE"}).scalar_one():
            conn.execute(text(f'GRANT USAGE ON SCHEMA public TO "{role}"'))


def _app_role_settings(conn: Connection, app: str) -> None:
    current = dict(
        s.split("=", 1)
        for s in conn.execute(
            text(
                "SELECT unnest(setconfig) FROM pg_db_role_setting "
                "WHERE setrole = CAST(:r AS regrole) AND setdatabase = 0"
            ),
            {"r": app},
        ).scalars()
    )
    for name, value in APP_ROLE_SETTINGS.items():
        if current.get(name) != value:
            conn.execute(text(f'ALTER ROLE "{app}" SET {name} = {_literal(conn, value)}'))


def adopt_existing_objects(conn: Connection, owner: str) -> int:
    """Hand the owner every object in schema public that a former layout left to another role.

    Databases migrated before the owner role existed have their tables owned by the
    bootstrap user (a superuser under compose). Objects of extensions stay as they are.
    """
    rows = conn.execute(
        text(
            """
            SELECT 'TABLE' AS kind, format('%I.%I', n.nspname, c.relname) AS name
            FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S')
              AND c.relowner <> CAST(:o AS regrole)
              AND pg_has_role(current_user, c.relowner, 'USAGE')
              -- identity and serial sequences follow their table
              AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                              AND d.objid = c.oid AND d.deptype IN ('a', 'i'))
              AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                              AND d.objid = c.oid AND d.deptype = 'e')
            UNION ALL
            SELECT 'FUNCTION', format('%I.%I(%s)', n.nspname, p.proname,
                                      pg_get_function_identity_arguments(p.oid))
            FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
            WHERE n.nspname = 'public' AND p.proowner <> CAST(:o AS regrole)
              AND pg_has_role(current_user, p.proowner, 'USAGE')
              AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass
                              AND d.objid = p.oid AND d.deptype = 'e')
            ORDER BY 1, 2
            """
        ),
        {"o": owner},
    ).all()
    for kind, name in rows:
        conn.execute(text(f'ALTER {kind} {name} OWNER TO "{owner}"'))
    return len(rows)


def provision_roles(conn: Connection, settings: MigrateSettings) -> None:
    """The cluster-wide part: the three roles, the bootstrap user's membership, the app role's
    settings. Once per PostgreSQL server, never two at once: they share the catalog rows."""
    owner, gateway, app = _roles(settings)
    for role in (owner, gateway, app):
        ensure_role(conn, role)
    bootstrap = conn.execute(text("SELECT current_user")).scalar_one()
    if bootstrap != owner.name:
        _grant_membership(conn, owner.name)
    _app_role_settings(conn, app.name)


def provision_database(conn: Connection, settings: MigrateSettings) -> None:
    """The per-database part: the roles' rights on this database and the objects' owner."""
    owner, gateway, app = settings.owner_role, settings.gateway_role, settings.app_role
    _database_grants(conn, owner, gateway, app)
    _schema_grants(conn, owner, gateway, app)
    adopted = adopt_existing_objects(conn, owner)
    if adopted:
        print(f"migrate: {adopted} existing object(s) now owned by {owner}", flush=True)


def become_owner(conn: Connection, owner: str) -> None:
    """Run what follows (all DDL) as the owner role, whatever DATABASE_URL's user is."""
    if conn.execute(text("SELECT current_user")).scalar_one() != owner:
        conn.execute(text(f'SET ROLE "{owner}"'))
