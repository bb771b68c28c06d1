"""The start-up audit: a service refuses to serve when the database would not hold the wall."""

from __future__ import annotations

from sqlalchemy import Connection, Engine, text

from services.tenancy.citus_audit import find_citus_problems

# Every relation with a tenant_id column that the role can touch, with what protects it.
# Views and materialized views count: they bypass the base table's RLS unless the view
# runs with the caller's rights (security_invoker), and a materialized view cannot have RLS.
_TENANT_RELATIONS = text(
    """
    SELECT format('%I.%I', n.nspname, c.relname) AS name,
           c.relkind::text AS kind,
           c.relrowsecurity AS enabled,
           c.relforcerowsecurity AS forced,
           EXISTS (
               SELECT 1 FROM pg_policy p
               WHERE p.polrelid = c.oid
                 AND (p.polroles = '{0}' OR EXISTS (
                     SELECT 1 FROM unnest(p.polroles) AS r(oid)
                     WHERE pg_has_role(current_user, r.oid, 'MEMBER')))
           ) AS has_policy,
           ARRAY(
               -- Permissive policies are ORed: one that does not read app.tenant_id
               -- (USING (true), say) opens the table whatever the others check.
               SELECT p.polname::text FROM pg_policy p
               WHERE p.polrelid = c.oid AND p.polpermissive
                 AND (p.polroles = '{0}' OR EXISTS (
                     SELECT 1 FROM unnest(p.polroles) AS r(oid)
                     WHERE pg_has_role(current_user, r.oid, 'MEMBER')))
                 AND NOT ((p.polqual IS NULL
                           OR pg_get_expr(p.polqual, p.polrelid) LIKE '%app.tenant_id%')
                          AND (p.polwithcheck IS NULL
                           OR pg_get_expr(p.polwithcheck, p.polrelid) LIKE '%app.tenant_id%'))
               ORDER BY 1
           ) AS loose_policies,
           pg_has_role(current_user, c.relowner, 'MEMBER') AS owned,
           coalesce('security_invoker=true' = ANY (c.reloptions)
                    OR 'security_invoker=on' = ANY (c.reloptions), false) AS invoker
    FROM pg_class c
    JOIN pg_namespace n ON n.oid = c.relnamespace
    JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'tenant_id' AND NOT a.attisdropped
    WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f')
      AND n.nspname NOT IN ('pg_catalog', 'information_schema')
      AND n.nspname NOT LIKE 'pg_toast%'
      AND (pg_has_role(current_user, c.relowner, 'MEMBER')
           OR has_table_privilege(c.oid, 'SELECT, INSERT, UPDATE, DELETE'))
    ORDER BY 1
    """
)

# Superuser and BYPASSRLS skip every policy, CREATEROLE can grant itself other roles; a role
# can also reach them through membership.
_POWERFUL_ROLES = text(
    """
    SELECT r.rolname, r.rolsuper, r.rolbypassrls, r.rolcreaterole
    FROM pg_roles r
    WHERE pg_has_role(current_user, r.oid, 'MEMBER')
      AND (r.rolsuper OR r.rolbypassrls OR r.rolcreaterole)
    ORDER BY r.rolname
    """
)

# The owner of the schema's tables may alter or drop any wall: no running process is it.
_OWNED_TABLE = text(
    """
    SELECT format('%I.%I', n.nspname, c.relname), c.relowner::regrole::text
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f')
      AND n.nspname NOT IN ('pg_catalog', 'information_schema')
      AND n.nspname NOT LIKE 'pg_toast%'
      AND pg_has_role(current_user, c.relowner, 'MEMBER')
    ORDER BY 1
    LIMIT 1
    """
)

# SECURITY DEFINER functions (not an extension's): each must end its search_path in pg_temp,
# or a temp object of the caller's can shadow what it names and run as the function's owner.
_DEFINER_FUNCTIONS = text(
    """
    SELECT p.oid::regprocedure::text AS name,
           (SELECT substr(c, 13) FROM unnest(p.proconfig) AS c
            WHERE c LIKE 'search_path=%') AS search_path
    FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
    WHERE p.prosecdef
      AND n.nspname NOT IN ('pg_catalog', 'information_schema')
      AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass
                      AND d.objid = p.oid AND d.deptype = 'e')
    ORDER BY 1
    """
)

_ROLE_SETTINGS = text(
    """
    SELECT split_part(c, '=', 1) AS name, split_part(c, '=', 2) AS value
    FROM pg_db_role_setting s, unnest(s.setconfig) AS c
    WHERE s.setrole = CAST(current_user AS regrole)
      AND s.setdatabase IN (0, (SELECT oid FROM pg_database WHERE datname = current_database()))
    """
)
# Set on the services' role by migrations (ALTER ROLE ... SET): a runaway statement or an
# abandoned transaction must end on the database's side too.
REQUIRED_ROLE_SETTINGS = ("statement_timeout", "idle_in_transaction_session_timeout")


def tenant_tables(conn: Connection) -> list[str]:
    """The tenant tables this role may touch (schema-qualified), from the audit's own query.

    One registry for the audit, the purge and the export: a new service's tables are covered
    as soon as its migration grants the services' role on them.
    """
    rows = conn.execute(_TENANT_RELATIONS).mappings()
    return [r["name"] for r in rows if r["kind"] in ("r", "p") and not r["owned"]]


class UnsafeDatabase(Exception):
    """The database would let this service read or write across tenants."""


def _role_problems(conn: Connection, user: str) -> list[str]:
    problems: list[str] = []
    for name, is_super, bypass, createrole in conn.execute(_POWERFUL_ROLES):
        via = "" if name == user else f" (through membership in {name})"
        if is_super:
            problems.append(f"role {user} is a superuser{via}")
        if bypass:
            problems.append(f"role {user} has BYPASSRLS{via}")
        if createrole:
            problems.append(f"role {user} has CREATEROLE{via}")
    return problems


def _ownership_problems(conn: Connection, user: str) -> list[str]:
    owned = conn.execute(_OWNED_TABLE).first()
    if owned is None:
        return []
    table, owner = owned
    via = "" if owner == user else f" (through membership in {owner})"
    return [f"role {user} is the owner of {table}{via}; connect as a role of its own"]


def find_role_problems(engine: Engine) -> list[str]:
    """What makes the connected role too powerful for a running process (SPEC §7)."""
    with engine.connect() as conn:
        user = conn.execute(text("SELECT current_user")).scalar_one()
        return _role_problems(conn, user) + _ownership_problems(conn, user)


def find_isolation_problems(engine: Engine) -> list[str]:
    """Everything that would let the service's role cross the tenant wall; empty when none."""
    problems: list[str] = []
    with engine.connect() as conn:
        user = conn.execute(text("SELECT current_user")).scalar_one()
        problems.extend(_role_problems(conn, user))
        for row in conn.execute(_TENANT_RELATIONS).mappings():
            problems.extend(_relation_problems(row, user))
        for name, search_path in conn.execute(_DEFINER_FUNCTIONS):
            last = (search_path or "").split(",")[-1].strip().strip('"')
            if last != "pg_temp":
                problems.append(
                    f"SECURITY DEFINER function {name} has search_path "
                    f"{search_path or '(unset)'}; it must end in pg_temp"
                )
        if conn.execute(text("SELECT has_database_privilege(current_database(), 'TEMP')")).scalar():
            problems.append(
                f"role {user} can create temporary tables (revoke TEMPORARY on the database "
                "from PUBLIC and from it)"
            )
        settings = {str(k): str(v) for k, v in conn.execute(_ROLE_SETTINGS).all()}
        for name in REQUIRED_ROLE_SETTINGS:
            if settings.get(name, "0") in ("0", ""):
                problems.append(f"role {user} has no {name} of its own (ALTER ROLE ... SET)")
        problems.extend(_ownership_problems(conn, user))
        problems.extend(find_citus_problems(conn, user))
    return problems


def _relation_problems(row: object, user: str) -> list[str]:
    r = dict(row)  # type: ignore[call-overload]
    name = r["name"]
    if r["kind"] == "v":
        return (
            []
            if r["invoker"]
            else [f"view {name} exposes tenant_id without security_invoker (it bypasses RLS)"]
        )
    if r["kind"] == "m":
        return [f"materialized view {name} exposes tenant_id (RLS cannot protect it)"]
    problems = []
    if r["owned"]:
        problems.append(f"role {user} owns tenant table {name}")
    if not r["enabled"]:
        problems.append(f"tenant table {name} does not have row-level security enabled")
    elif not r["forced"]:
        problems.append(f"tenant table {name} does not have row-level security forced")
    if not r["has_policy"]:
        problems.append(f"tenant table {name} has no row-level security policy for {user}")
    for policy in r["loose_policies"]:
        problems.append(f"tenant table {name} has policy {policy} that does not read app.tenant_id")
    return problems


def require_isolation(engine: Engine) -> None:
    """Raise `UnsafeDatabase` naming the first problem (and how many more) when any exists."""
    _raise_first(find_isolation_problems(engine))


def require_modest_role(engine: Engine) -> None:
    """Raise `UnsafeDatabase` when the role is a superuser, the owner, CREATEROLE or BYPASSRLS."""
    _raise_first(find_role_problems(engine))


def _raise_first(problems: list[str]) -> None:
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise UnsafeDatabase(problems[0] + more)
