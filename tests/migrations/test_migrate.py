"""`python -m migrations` (= `make migrate`, compose's `migrate`): repeatable, and it provisions
the services' role exactly as SPEC §7 describes it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psycopg2
from alembic.config import Config
from alembic.script import ScriptDirectory

from kit.procs import ROOT, run_migrations
from kit.servers import PgServer
from kit.stacks import new_database


def _migrate(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "APP_DATABASE_URL")}
    return subprocess.run(
        [sys.executable, "-m", "migrations"],
        env={**base, **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _head() -> str:
    config = Config(str(ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(ROOT / "migrations"))
    head = ScriptDirectory.from_config(config).get_current_head()
    assert head is not None
    return head


def _schema(url: str) -> list[tuple[str, ...]]:
    conn = psycopg2.connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT table_name, column_name, data_type FROM information_schema.columns "
                "WHERE table_schema = 'public' ORDER BY 1, 2"
            )
            return cur.fetchall()
    finally:
        conn.close()


def test_running_migrations_twice_changes_nothing_and_keeps_data(
    postgres_server: PgServer, kit_workdir: Path
) -> None:
    database = new_database(postgres_server, log_dir=kit_workdir / "logs")
    conn = psycopg2.connect(database.url)
    with conn, conn.cursor() as cur:
        cur.execute("INSERT INTO tenants (name) VALUES ('Kept') RETURNING id")
        row = cur.fetchone()
    conn.close()
    before = _schema(database.url)

    run_migrations(database_url=database.url, log_path=kit_workdir / "logs" / "again.log")

    assert _schema(database.url) == before
    conn = psycopg2.connect(database.url)
    with conn, conn.cursor() as cur:
        cur.execute("SELECT id, name, slug, status FROM tenants")
        assert cur.fetchall() == [(row[0], "Kept", "kept", "active")]
        cur.execute("SELECT version_num FROM alembic_version")
        assert cur.fetchall() == [(_head(),)]
    conn.close()


def test_the_services_role_is_restricted_and_cannot_touch_gateway_tables(
    postgres_server: PgServer, kit_workdir: Path
) -> None:
    database = new_database(postgres_server, log_dir=kit_workdir / "logs")
    conn = psycopg2.connect(database.url)
    with conn, conn.cursor() as cur:
        cur.execute(
            "SELECT rolsuper, rolbypassrls, rolcreaterole, rolcreatedb, rolcanlogin "
            "FROM pg_roles WHERE rolname = 'tenantkit_app'"
        )
        assert cur.fetchone() == (False, False, False, False, True)
        cur.execute(
            "SELECT relname FROM pg_class WHERE relowner = 'tenantkit_app'::regrole "
            "AND relnamespace = 'public'::regnamespace"
        )
        assert cur.fetchall() == []
        for table in ("tenants", "api_keys", "tenant_row_ids"):
            cur.execute(
                "SELECT has_table_privilege('tenantkit_app', %s, 'SELECT'), "
                "has_table_privilege('tenantkit_app', %s, 'INSERT')",
                (table, table),
            )
            assert cur.fetchone() == (False, False), table
        cur.execute("SELECT has_table_privilege('tenantkit_app', 'users', 'SELECT')")
        assert cur.fetchone() == (True,)
    conn.close()


def test_a_malformed_database_url_stops_migrate_with_one_line_naming_it() -> None:
    result = _migrate({"DATABASE_URL": "mysql://root@127.0.0.1/tenantkit"})
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "migrate: invalid setting DATABASE_URL: not a PostgreSQL URL (scheme 'mysql')"
    ]


def test_an_app_role_equal_to_the_owner_is_refused(postgres_server: PgServer) -> None:
    owner = postgres_server.owner_url()
    result = _migrate({"DATABASE_URL": owner, "APP_DATABASE_URL": owner})
    assert result.returncode != 0
    assert "invalid setting APP_DATABASE_URL" in result.stderr
    assert "other than the owner" in result.stderr
