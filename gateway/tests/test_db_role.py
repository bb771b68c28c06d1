"""The gateway and its CLI connect as the gateway role, and refuse a role that can do more."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import psycopg2
import pytest
from sqlalchemy.engine import make_url

from kit.procs import ROOT, ServiceProcess, child_env
from kit.stacks import Database, Secrets, gateway_env
from services.tenancy.dburl import derive_role_url, plain

EXIT_UNSAFE_DATABASE = 3


def _gateway(env: dict[str, str | None], module: str = "gateway", *args: str) -> Any:
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        env=child_env({"GATEWAY_PORT": "1", **env}),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _lines(result: Any) -> list[str]:
    return [line for line in (result.stderr + result.stdout).splitlines() if line.strip()]


def _role_url(database: Database, role: str, attributes: str) -> str:
    conn = psycopg2.connect(database.url)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,))
            verb = "ALTER" if cur.fetchone() else "CREATE"
            cur.execute(f"{verb} ROLE {role} LOGIN PASSWORD 'pw' {attributes}")
    finally:
        conn.close()
    return plain(make_url(database.url).set(username=role, password="pw"))


@pytest.fixture
def env(database: Database, secrets: Secrets) -> dict[str, str | None]:
    return gateway_env(
        database=database,
        redis_url="redis://127.0.0.1:1/0",
        users_url="http://127.0.0.1:1",
        secrets=secrets,
    )


@pytest.mark.parametrize(
    ("role", "expected"),
    [
        ("superuser", "role postgres is a superuser"),
        ("owner", "role tenantkit_owner is the owner of public."),
        ("createrole", "role tk_gw_createrole has CREATEROLE"),
        ("bypassrls", "role tk_gw_bypassrls has BYPASSRLS"),
        ("member", "role tk_gw_member is the owner of public."),
    ],
)
def test_gateway_refuses_a_powerful_database_role_with_one_line(
    database: Database, env: dict[str, str | None], role: str, expected: str
) -> None:
    if role == "superuser":
        url = database.url
    elif role == "owner":
        url = plain(derive_role_url(database.url, role="tenantkit_owner"))
    elif role == "member":
        url = _role_url(database, "tk_gw_member", "")
        conn = psycopg2.connect(database.url)
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("GRANT tenantkit_owner TO tk_gw_member")
        conn.close()
    else:
        url = _role_url(database, f"tk_gw_{role}", role.upper())
    result = _gateway({**env, "GATEWAY_DATABASE_URL": url})
    assert result.returncode == EXIT_UNSAFE_DATABASE, result.stderr
    lines = _lines(result)
    assert len(lines) == 1, lines
    assert lines[0].startswith("gateway: refusing to start: "), lines
    assert expected in lines[0]


def test_cli_refuses_the_superuser(database: Database) -> None:
    result = _gateway({"GATEWAY_DATABASE_URL": database.url}, "gateway.cli", "tenants", "list")
    assert result.returncode == EXIT_UNSAFE_DATABASE
    (line,) = _lines(result)
    assert line.startswith("cli: refusing to start: role postgres is a superuser")


def test_the_running_gateway_connects_as_the_gateway_role(
    gateway: ServiceProcess, database: Database, admin: Any
) -> None:
    # The admin API touches the database: its connection is the gateway role's.
    assert admin.get("/admin/tenants").status_code == 200
    conn = psycopg2.connect(database.url)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(
                "SELECT DISTINCT usename FROM pg_stat_activity "
                "WHERE application_name = 'gateway' AND datname = current_database()"
            )
            assert cur.fetchall() == [("tenantkit_gateway",)]
    finally:
        conn.close()
