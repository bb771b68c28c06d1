"""The roles of SPEC §7 against real PostgreSQL: least privilege, hardened definer functions,
re-runs as a non-superuser owner, concurrent jobs, and the upgrade from the old layout."""

from __future__ import annotations

import re
import subprocess
import sys
import tarfile
from io import BytesIO
from pathlib import Path

import psycopg2
import psycopg2.errors
import pytest
from sqlalchemy.engine import make_url

from kit.procs import ROOT, child_env
from kit.servers import PgServer
from kit.stacks import Database, new_database
from services.tenancy.dburl import derive_role_url, plain

OWNER, GATEWAY, APP = "tenantkit_owner", "tenantkit_gateway", "tenantkit_app"
# The last commit before the roles existed: its migrations make "today's layout" (tables
# owned by the bootstrap superuser, the services' role with the superuser's password).
OLD_LAYOUT_COMMIT = "132c615"


def _migrate(env: dict[str, str | None], *, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "migrations"],
        env=child_env({**env, "PYTHONPATH": str(cwd)}),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _one(url: str, sql: str, params: tuple[object, ...] = ()) -> object:
    conn = psycopg2.connect(url)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(sql, params)
            row = cur.fetchone()
            return row[0] if row and len(row) == 1 else row
    finally:
        conn.close()


def _owner_url(database: Database) -> str:
    return plain(derive_role_url(database.url, role=OWNER))


@pytest.fixture(scope="module")
def db(postgres_server: PgServer, kit_workdir: Path) -> Database:
    return new_database(postgres_server, log_dir=kit_workdir / "logs", name="roles_test")


def test_three_roles_none_superuser_createrole_or_bypassrls(db: Database) -> None:
    for role in (OWNER, GATEWAY, APP):
        attrs = _one(
            db.url,
            "SELECT rolsuper, rolcreaterole, rolbypassrls, rolcreatedb, rolcanlogin "
            "FROM pg_roles WHERE rolname = %s",
            (role,),
        )
        assert attrs == (False, False, False, False, True), role
    owners = _one(
        db.url,
        "SELECT array_agg(DISTINCT relowner::regrole::text) FROM pg_class "
        "WHERE relnamespace = 'public'::regnamespace AND relkind IN ('r', 'S')",
    )
    assert owners == [OWNER]


def test_the_gateway_role_reaches_only_tenants_and_api_keys(db: Database) -> None:
    conn = psycopg2.connect(db.gateway_url)
    try:
        with conn, conn.cursor() as cur:
            cur.execute("INSERT INTO tenants (name) VALUES ('Gw Role') RETURNING id")
            (tenant_id,) = cur.fetchone()  # type: ignore[misc]
            cur.execute(
                "INSERT INTO api_keys (tenant_id, prefix, key_hash) VALUES (%s, 'p', 'h') "
                "RETURNING id",
                (tenant_id,),
            )
            cur.execute("UPDATE api_keys SET revoked_at = now() WHERE tenant_id = %s", (tenant_id,))
        for sql in ("SELECT * FROM users", "SELECT * FROM tenant_row_ids"):
            with pytest.raises(psycopg2.errors.InsufficientPrivilege), conn, conn.cursor() as cur:
                cur.execute(sql)
        with pytest.raises(psycopg2.errors.InsufficientPrivilege), conn, conn.cursor() as cur:
            cur.execute("CREATE TABLE public.gw_made (x int)")
        # Deleting a tenant cascades to its data through the foreign keys, as the admin API does.
        with conn, conn.cursor() as cur:
            cur.execute("DELETE FROM tenants WHERE id = %s", (tenant_id,))
            assert cur.rowcount == 1
    finally:
        conn.close()


def test_the_services_role_cannot_create_temporary_tables(db: Database) -> None:
    conn = psycopg2.connect(db.app_url)
    try:
        with pytest.raises(psycopg2.errors.InsufficientPrivilege), conn, conn.cursor() as cur:
            cur.execute("CREATE TEMP TABLE t (x int)")
    finally:
        conn.close()
    settings = _one(
        db.url,
        "SELECT setconfig FROM pg_db_role_setting WHERE setrole = %s::regrole",
        (APP,),
    )
    assert set(settings) == {"statement_timeout=4s", "idle_in_transaction_session_timeout=5s"}  # type: ignore[arg-type]


# The attack of issue 15, as the services' role: a temp table shadowing tenant_row_ids with a
# trigger that reports who runs it. Before the fix it ran as the definer (the superuser).
_HIJACK = [
    "CREATE TEMP TABLE tenant_row_ids (tenant_id bigint, table_name text, last_id bigint, "
    "PRIMARY KEY (tenant_id, table_name))",
    "CREATE FUNCTION pg_temp.spy() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
    "RAISE EXCEPTION 'hijacked: ran as % (superuser %)', current_user, "
    "(SELECT rolsuper FROM pg_roles WHERE rolname = current_user); END $$",
    "CREATE TRIGGER spy BEFORE INSERT ON pg_temp.tenant_row_ids "
    "FOR EACH ROW EXECUTE FUNCTION pg_temp.spy()",
    # So that a definer that is not a superuser may write it too (and run the trigger).
    "GRANT ALL ON pg_temp.tenant_row_ids TO PUBLIC",
]


def _hijack(app_url: str, tenant_id: object) -> str:
    """Run the attack as the services' role; what the INSERT into users ended in."""
    conn = psycopg2.connect(app_url)
    try:
        with conn, conn.cursor() as cur:
            for statement in _HIJACK:
                cur.execute(statement)
            cur.execute("SELECT set_config('app.tenant_id', %s, true)", (str(tenant_id),))
            cur.execute(
                "INSERT INTO users (tenant_id, name) VALUES (%s, 'x') RETURNING id", (tenant_id,)
            )
            (user_id,) = cur.fetchone()  # type: ignore[misc]
            cur.execute("SELECT count(*) FROM pg_temp.tenant_row_ids")
            return f"inserted user {user_id}, temp rows {cur.fetchone()[0]}"  # type: ignore[index]
    except psycopg2.Error as exc:
        return str(exc).splitlines()[0]
    finally:
        conn.close()


def test_a_temp_table_cannot_hijack_the_definer_function(
    postgres_server: PgServer, kit_workdir: Path
) -> None:
    database = new_database(postgres_server, log_dir=kit_workdir / "logs", name="hijack_test")
    tenant_id = _one(database.url, "INSERT INTO tenants (name) VALUES ('Victim') RETURNING id")
    assert "permission denied to create temporary tables" in _hijack(database.app_url, tenant_id)
    # Even were TEMPORARY granted back by mistake, the function must not see the temp table.
    _one(database.url, f"GRANT TEMPORARY ON DATABASE hijack_test TO {APP}; SELECT 1")
    try:
        assert _hijack(database.app_url, tenant_id) == "inserted user 1, temp rows 0"
    finally:
        _one(database.url, f"REVOKE TEMPORARY ON DATABASE hijack_test FROM {APP}; SELECT 1")


def test_every_security_definer_function_pins_pg_temp_last_and_qualifies_tables(
    db: Database,
) -> None:
    tables = [
        str(t)
        for t in _one(  # type: ignore[union-attr]
            db.url,
            "SELECT array_agg(relname::text) FROM pg_class "
            "WHERE relnamespace = 'public'::regnamespace AND relkind IN ('r', 'p', 'v', 'm')",
        )
    ]
    conn = psycopg2.connect(db.url)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(
                "SELECT p.oid::regprocedure::text, p.proconfig, p.prosrc FROM pg_proc p "
                "WHERE p.prosecdef AND p.pronamespace NOT IN "
                "('pg_catalog'::regnamespace, 'information_schema'::regnamespace)"
            )
            functions = cur.fetchall()
    finally:
        conn.close()
    assert functions, "the schema has definer functions (tenant_row_id at least)"
    for name, config, source in functions:
        paths = [c.removeprefix("search_path=") for c in config or [] if "search_path=" in c]
        assert paths and paths[0].replace(" ", "").split(",")[-1] == "pg_temp", (name, config)
        for table in tables:
            unqualified = re.search(rf"(?<![\w.\"]){re.escape(table)}\b", source)
            assert unqualified is None, f"{name} names {table} without its schema"


def test_two_migrate_jobs_at_once_both_succeed(postgres_server: PgServer) -> None:
    url = postgres_server.create_database("roles_concurrent")
    jobs = [
        subprocess.Popen(
            [sys.executable, "-m", "migrations"],
            env=child_env({"DATABASE_URL": url}),
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [job.communicate(timeout=120)[0] for job in jobs]
    assert [job.returncode for job in jobs] == [0, 0], outputs


def test_migrations_rerun_as_the_non_superuser_owner(db: Database) -> None:
    # PostgreSQL 15 refuses ALTER ROLE ... NOSUPERUSER to a non-superuser even when nothing
    # changes (issue 16): a re-run as the owner must name nothing it cannot change.
    result = _migrate(
        {
            "DATABASE_URL": _owner_url(db),
            "GATEWAY_DATABASE_URL": db.gateway_url,
            "APP_DATABASE_URL": db.app_url,
        }
    )
    assert result.returncode == 0, result.stderr + result.stdout
    assert "migrate: placement shared: at " in result.stdout
    # And the roles still work with their passwords.
    assert _one(db.app_url, "SELECT current_user") == APP
    assert _one(db.gateway_url, "SELECT current_user") == GATEWAY


def _old_checkout(tmp: Path) -> Path:
    """The migrations of OLD_LAYOUT_COMMIT, written out to run as they were."""
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", OLD_LAYOUT_COMMIT, "alembic.ini", "migrations"]
        + ["services/__init__.py", "services/tenancy"],
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(tmp, filter="data")
    return tmp


def test_an_old_layout_database_upgrades_to_the_roles(
    postgres_server: PgServer, tmp_path: Path
) -> None:
    url = postgres_server.create_database("roles_upgrade")
    old = _migrate({"DATABASE_URL": url}, cwd=_old_checkout(tmp_path))
    assert old.returncode == 0, old.stderr
    # Today's layout: everything owned by the bootstrap superuser, the services' role shares
    # its password, some data in place.
    shared = plain(make_url(url).set(username=APP))
    assert _one(shared, "SELECT current_user") == APP
    tenant_id = _one(url, "INSERT INTO tenants (name) VALUES ('Old') RETURNING id")
    # The finding of issue 15, reproduced on the old layout: the trigger runs as the superuser.
    assert _hijack(shared, tenant_id) == "hijacked: ran as postgres (superuser t)"
    _one(
        url,
        f"SET app.tenant_id = '{tenant_id}'; INSERT INTO users (tenant_id, name) "
        f"VALUES ({tenant_id}, 'Before') RETURNING id",
    )

    new = _migrate({"DATABASE_URL": url})
    assert new.returncode == 0, new.stderr + new.stdout

    upgraded = Database.derived("roles_upgrade", url)
    owners = _one(
        url,
        "SELECT array_agg(DISTINCT relowner::regrole::text) FROM pg_class "
        "WHERE relnamespace = 'public'::regnamespace AND relkind IN ('r', 'S')",
    )
    assert owners == [OWNER]
    config = _one(url, "SELECT proconfig FROM pg_proc WHERE proname = 'tenant_row_id'")
    assert config == ["search_path=pg_catalog, public, pg_temp"]
    with pytest.raises(psycopg2.OperationalError, match="password authentication failed"):
        psycopg2.connect(shared)
    # The data is kept and numbering goes on, through the services' role and its own password.
    conn = psycopg2.connect(upgraded.app_url)
    try:
        with conn, conn.cursor() as cur:
            cur.execute("SELECT set_config('app.tenant_id', %s, true)", (str(tenant_id),))
            cur.execute(
                "INSERT INTO users (tenant_id, name) VALUES (%s, 'After') RETURNING id",
                (tenant_id,),
            )
            assert cur.fetchone() == (2,)
            cur.execute("SELECT name FROM users ORDER BY id")
            assert cur.fetchall() == [("Before",), ("After",)]
    finally:
        conn.close()
    assert _one(upgraded.gateway_url, "SELECT name FROM tenants") == "Old"
    assert "permission denied to create temporary tables" in _hijack(upgraded.app_url, tenant_id)


def test_no_role_but_the_owner_may_execute_trigger_functions(db: Database) -> None:
    rows = _one(
        db.url,
        "SELECT array_agg(p.oid::regprocedure::text ORDER BY 1) FROM pg_proc p "
        "WHERE p.pronamespace = 'public'::regnamespace "
        "AND p.prorettype = 'trigger'::regtype "
        "AND (has_function_privilege('tenantkit_app', p.oid, 'EXECUTE') "
        "     OR has_function_privilege('tenantkit_gateway', p.oid, 'EXECUTE'))",
    )
    assert rows is None
