"""The real process refuses to start on bad settings or an unsafe database: one line, non-zero."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg2
import psycopg2.extensions
import pytest
from sqlalchemy.engine import make_url

from kit.procs import ROOT, child_env
from kit.testing import Database, new_database
from services.tenancy.audit import find_isolation_problems
from services.tenancy.dburl import derive_role_url, plain
from services.tenancy.runtime import create_tenant_engine
from services.users.config import Settings

SECRET = "startup-tests-secret-0123456789"
EXIT_BAD_SETTING = 2
EXIT_UNSAFE_DATABASE = 3


def _start(env: dict[str, str | None]) -> subprocess.CompletedProcess[str]:
    """Run `python -m services.users` until it exits (it must not get as far as serving)."""
    return subprocess.run(
        [sys.executable, "-m", "services.users"],
        env=child_env({"USERS_PORT": "1", **env}),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )


def _one_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = [line for line in (result.stderr + result.stdout).splitlines() if line.strip()]
    assert len(lines) == 1, lines
    return lines[0]


def test_a_malformed_setting_stops_the_process_with_exit_2_and_one_line() -> None:
    # The wiring, once, in a real process; the other cases go through the same function
    # (Settings.load -> stop_on_bad_setting) in-process below.
    result = _start(
        {
            "APP_DATABASE_URL": "postgresql://tenantkit_app:x@127.0.0.1:1/db",
            "INTERNAL_SIGNING_SECRET": SECRET,
            "USERS_PORT": "eighty",
        }
    )
    assert result.returncode == EXIT_BAD_SETTING
    assert _one_line(result).startswith("users-service: invalid setting USERS_PORT: ")


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"USERS_PORT": "70000"}, "USERS_PORT"),
        ({"INTERNAL_SIGNING_SECRET": None}, "INTERNAL_SIGNING_SECRET"),
        ({"INTERNAL_SIGNING_SECRET": "short"}, "INTERNAL_SIGNING_SECRET"),
        ({"SERVICE_SIGNING_KEY": "ab" * 32}, "SERVICE_SIGNING_KEY"),  # beside the secret
        ({"INTERNAL_SIGNING_SECRET": None, "SERVICE_SIGNING_KEY": "xyz"}, "SERVICE_SIGNING_KEY"),
        ({"REDIS_URL": "http://127.0.0.1:6379"}, "REDIS_URL"),
        ({"SERVICE_ROUTE_PREFIX": "users"}, "SERVICE_ROUTE_PREFIX"),
        ({"REPLAY_STORE_FAIL_CLOSED": "perhaps"}, "REPLAY_STORE_FAIL_CLOSED"),
        ({"APP_DATABASE_URL": "mysql://u@h/db"}, "APP_DATABASE_URL"),
        ({"APP_DATABASE_URL": None, "DATABASE_URL": None}, "APP_DATABASE_URL"),
        ({"TENANT_SETTING": "sometimes"}, "TENANT_SETTING"),
    ],
)
def test_malformed_setting_stops_the_process_with_one_line_naming_it(
    env: dict[str, str | None], variable: str, capsys: pytest.CaptureFixture[str]
) -> None:
    base: dict[str, str | None] = {
        "APP_DATABASE_URL": "postgresql://tenantkit_app:x@127.0.0.1:1/db",
        "INTERNAL_SIGNING_SECRET": SECRET,
        "USERS_PORT": "8001",
    }
    given = {k: v for k, v in {**base, **env}.items() if v is not None}
    with pytest.raises(SystemExit) as stopped:
        Settings.load(given)
    assert stopped.value.code == EXIT_BAD_SETTING
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"users-service: invalid setting {variable}: ")


@pytest.fixture(scope="module")
def audit_db(postgres_server: Any, kit_workdir: Path) -> Database:
    """A migrated database of its own: these tests add unsafe tables to it."""
    return new_database(postgres_server, log_dir=kit_workdir / "logs", name="users_audit")


@pytest.fixture
def audit_owner(audit_db: Database) -> Iterator[psycopg2.extensions.connection]:
    conn = psycopg2.connect(audit_db.url)
    conn.autocommit = True
    yield conn
    with conn.cursor() as cur:
        cur.execute("DROP VIEW IF EXISTS user_names")
        cur.execute("DROP MATERIALIZED VIEW IF EXISTS user_counts")
        cur.execute("DROP TABLE IF EXISTS notes")
        cur.execute("DROP FUNCTION IF EXISTS public.leaky()")
        cur.execute("REVOKE TEMPORARY ON DATABASE users_audit FROM tenantkit_app")
        cur.execute("ALTER ROLE tenantkit_app SET statement_timeout = '4s'")
    conn.close()


def _run(conn: psycopg2.extensions.connection, *statements: str) -> None:
    with conn.cursor() as cur:
        for statement in statements:
            cur.execute(statement)


def _ensure_role(conn: psycopg2.extensions.connection, name: str, attributes: str) -> None:
    with conn.cursor() as cur:
        cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (name,))
        verb = "ALTER" if cur.fetchone() else "CREATE"
        cur.execute(f"{verb} ROLE {name} LOGIN PASSWORD 'pw' {attributes}")


def _refusal(audit_db: Database, app_url: str | None = None) -> str:
    result = _start(
        {"APP_DATABASE_URL": app_url or audit_db.app_url, "INTERNAL_SIGNING_SECRET": SECRET}
    )
    assert result.returncode == EXIT_UNSAFE_DATABASE, result.stderr
    line = _one_line(result)
    assert line.startswith("users-service: refusing to start: "), line
    return line


def _as_role(audit_db: Database, role: str) -> str:
    return plain(make_url(audit_db.url).set(username=role, password="pw"))


def test_sealed_database_passes_the_audit(audit_db: Database, audit_owner: Any) -> None:
    engine = create_tenant_engine(audit_db.app_url, application_name="users-tests")
    try:
        assert find_isolation_problems(engine) == []
    finally:
        engine.dispose()


def test_refuses_to_run_as_a_superuser(audit_db: Database) -> None:
    assert "role postgres is a superuser" in _refusal(audit_db, audit_db.url)


def test_refuses_a_role_with_bypassrls(audit_db: Database, audit_owner: Any) -> None:
    _ensure_role(audit_owner, "tk_audit_bypass", "BYPASSRLS")
    assert "role tk_audit_bypass has BYPASSRLS" in _refusal(
        audit_db, _as_role(audit_db, "tk_audit_bypass")
    )


def test_refuses_a_role_that_inherits_bypassrls(audit_db: Database, audit_owner: Any) -> None:
    _ensure_role(audit_owner, "tk_audit_bypass", "BYPASSRLS")
    _ensure_role(audit_owner, "tk_audit_member", "NOBYPASSRLS")
    _run(audit_owner, "GRANT tk_audit_bypass TO tk_audit_member")
    line = _refusal(audit_db, _as_role(audit_db, "tk_audit_member"))
    assert "role tk_audit_member has BYPASSRLS (through membership in tk_audit_bypass)" in line


_SEALED_NOTES = (
    "CREATE TABLE notes (tenant_id bigint NOT NULL, body text)",
    "ALTER TABLE notes ENABLE ROW LEVEL SECURITY",
    "ALTER TABLE notes FORCE ROW LEVEL SECURITY",
    "CREATE POLICY tenant_isolation ON notes USING "
    "(tenant_id = nullif(current_setting('app.tenant_id', true), '')::bigint)",
    "GRANT SELECT ON notes TO tenantkit_app",
)


def test_refuses_when_its_role_owns_a_tenant_table(audit_db: Database, audit_owner: Any) -> None:
    _run(audit_owner, *_SEALED_NOTES, "ALTER TABLE notes OWNER TO tenantkit_app")
    assert "role tenantkit_app owns tenant table public.notes" in _refusal(audit_db)


@pytest.mark.parametrize(
    ("undo", "reason"),
    [
        (
            "ALTER TABLE notes DISABLE ROW LEVEL SECURITY",
            "does not have row-level security enabled",
        ),
        (
            "ALTER TABLE notes NO FORCE ROW LEVEL SECURITY",
            "does not have row-level security forced",
        ),
        ("DROP POLICY tenant_isolation ON notes", "has no row-level security policy"),
    ],
)
def test_refuses_a_readable_tenant_table_without_the_wall(
    audit_db: Database, audit_owner: Any, undo: str, reason: str
) -> None:
    _run(audit_owner, *_SEALED_NOTES)
    engine = create_tenant_engine(audit_db.app_url, application_name="users-tests")
    try:
        # The table is sealed before the change: the refusal is about exactly that change.
        assert find_isolation_problems(engine) == []
    finally:
        engine.dispose()
    _run(audit_owner, undo)
    assert f"tenant table public.notes {reason}" in _refusal(audit_db)


def test_refuses_a_view_that_reads_around_the_policy(audit_db: Database, audit_owner: Any) -> None:
    _run(
        audit_owner,
        "CREATE VIEW user_names AS SELECT tenant_id, name FROM users",
        "GRANT SELECT ON user_names TO tenantkit_app",
    )
    assert "view public.user_names exposes tenant_id without security_invoker" in _refusal(audit_db)


def test_refuses_a_definer_function_whose_search_path_does_not_end_in_pg_temp(
    audit_db: Database, audit_owner: Any
) -> None:
    _run(
        audit_owner,
        "CREATE FUNCTION public.leaky() RETURNS int LANGUAGE sql SECURITY DEFINER "
        "SET search_path = pg_catalog, public AS 'SELECT 1'",
    )
    line = _refusal(audit_db)
    assert (
        "SECURITY DEFINER function leaky() has search_path pg_catalog, public; "
        "it must end in pg_temp" in line
    )


def test_refuses_when_its_role_can_create_temporary_tables(
    audit_db: Database, audit_owner: Any
) -> None:
    _run(audit_owner, "GRANT TEMPORARY ON DATABASE users_audit TO tenantkit_app")
    assert "role tenantkit_app can create temporary tables" in _refusal(audit_db)


def test_refuses_a_role_without_its_own_statement_timeout(
    audit_db: Database, audit_owner: Any
) -> None:
    _run(audit_owner, "ALTER ROLE tenantkit_app RESET statement_timeout")
    assert "role tenantkit_app has no statement_timeout of its own" in _refusal(audit_db)


def test_refuses_a_role_with_createrole(audit_db: Database, audit_owner: Any) -> None:
    _ensure_role(audit_owner, "tk_audit_createrole", "CREATEROLE")
    assert "role tk_audit_createrole has CREATEROLE" in _refusal(
        audit_db, _as_role(audit_db, "tk_audit_createrole")
    )


def test_refuses_to_run_as_the_owner_or_a_member_of_it(
    audit_db: Database, audit_owner: Any
) -> None:
    owner = plain(derive_role_url(audit_db.url, role="tenantkit_owner"))
    assert "role tenantkit_owner owns tenant table public." in _refusal(audit_db, owner)
    _ensure_role(audit_owner, "tk_audit_owner_member", "")
    _run(audit_owner, "GRANT tenantkit_owner TO tk_audit_owner_member")
    line = _refusal(audit_db, _as_role(audit_db, "tk_audit_owner_member"))
    assert "role tk_audit_owner_member owns tenant table public." in line


def _problems(audit_db: Database) -> list[str]:
    engine = create_tenant_engine(audit_db.app_url, application_name="users-tests")
    try:
        return find_isolation_problems(engine)
    finally:
        engine.dispose()


def test_refuses_a_materialized_view_of_tenant_rows(audit_db: Database, audit_owner: Any) -> None:
    _run(
        audit_owner,
        "CREATE MATERIALIZED VIEW user_counts AS "
        "SELECT tenant_id, count(*) AS n FROM users GROUP BY tenant_id",
        "GRANT SELECT ON user_counts TO tenantkit_app",
    )
    assert _problems(audit_db) == [
        "materialized view public.user_counts exposes tenant_id (RLS cannot protect it)"
    ]


@pytest.mark.parametrize(
    "policy",
    [
        "CREATE POLICY see_all ON notes USING (true)",
        "CREATE POLICY see_all ON notes FOR SELECT USING (tenant_id IS NOT NULL)",
        "CREATE POLICY see_all ON notes FOR INSERT WITH CHECK (true)",
    ],
)
def test_refuses_a_policy_that_does_not_read_the_tenant_setting(
    audit_db: Database, audit_owner: Any, policy: str
) -> None:
    # Beside the right policy: permissive policies are ORed, so this one alone opens the table.
    _run(audit_owner, *_SEALED_NOTES)
    assert _problems(audit_db) == []
    _run(audit_owner, policy)
    assert _problems(audit_db) == [
        "tenant table public.notes has policy see_all that does not read app.tenant_id"
    ]


def test_a_restrictive_policy_that_reads_no_tenant_narrows_and_is_accepted(
    audit_db: Database, audit_owner: Any
) -> None:
    _run(
        audit_owner,
        *_SEALED_NOTES,
        "CREATE POLICY no_empty ON notes AS RESTRICTIVE USING (body <> '')",
    )
    assert _problems(audit_db) == []
