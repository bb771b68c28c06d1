"""Per-tenant database seconds against what PostgreSQL itself reports (issue 12's target).

PostgreSQL here preloads `pg_stat_statements` (both the system and the embedded builds ship
it), in a server of this module's own, so the rest of the suite runs without its overhead.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import psycopg2
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.engine import make_url

from kit.servers import PgServer
from kit.stacks import Stack

# What one statement's round trip adds beyond PostgreSQL's execution time (loopback, psycopg2,
# SQLAlchemy's hooks, the GIL shared with the event loop). Measured on a loaded 2-core machine:
# ~2.8 ms per statement; bound with margin so CI load does not make it flaky.
MAX_GAP_PER_STATEMENT_S = 0.02


@pytest.fixture(scope="module")
def postgres_server(kit_workdir: Path) -> Iterator[PgServer]:
    """This module's PostgreSQL, with pg_stat_statements loaded."""
    server = PgServer(kit_workdir / "postgres-pgss", for_tests=True)
    assert server.binaries.has_library("pg_stat_statements"), server.binaries
    server.settings["shared_preload_libraries"] = "pg_stat_statements"
    server.start()
    yield server
    server.stop()


def _db_totals(users_url: str) -> tuple[float, float, dict[str, float]]:
    """(seconds, statements, seconds per tenant label) from the service's /metrics."""
    text = httpx.get(f"{users_url}/metrics", timeout=10).text
    seconds, statements, per_tenant = 0.0, 0.0, {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "service_db_seconds_total":
                seconds += s.value
                per_tenant[s.labels["tenant"]] = s.value
            elif s.name == "service_db_statements_total":
                statements += s.value
    return seconds, statements, per_tenant


def _server_seconds(owner_url: str, role: str, dbname: str) -> tuple[float, int]:
    """PostgreSQL's own execution seconds and calls for `role` in `dbname`."""
    with psycopg2.connect(owner_url) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT coalesce(sum(total_exec_time), 0) / 1000.0, coalesce(sum(calls), 0)"
            " FROM pg_stat_statements s JOIN pg_roles r ON r.oid = s.userid"
            " JOIN pg_database d ON d.oid = s.dbid WHERE r.rolname = %s AND d.datname = %s",
            (role, dbname),
        )
        seconds, calls = cur.fetchone()
    conn.close()
    return float(seconds), int(calls)


def _reset(owner_url: str) -> None:
    conn = psycopg2.connect(owner_url)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        cur.execute("SELECT pg_stat_statements_reset()")
    conn.close()


def test_per_tenant_db_seconds_cover_what_postgresql_reports_for_the_services_role(
    fresh_stack: Callable[..., Stack],
) -> None:
    """Sum of per-tenant seconds vs pg_stat_statements' total_exec_time for the role.

    Not within 5 %: the services time each statement around its round trip (there is no
    server-side time per tenant without SQL comments, which SPEC §10 rules out), so the sum
    includes the loopback network, psycopg2 and the event hooks; for the kit's sub-millisecond
    statements that is most of it (measured on a loaded 2-core machine: PostgreSQL 0.022 s vs
    the services' 0.256 s for 84 statements, i.e. 9 % of the client sum).
    What holds, and is asserted: the per-tenant seconds never undercount PostgreSQL (every
    statement of the role is charged to some tenant or "other"), the statements counted equal
    PostgreSQL's calls, and what exceeds the server's time is at most one round trip's cost
    per statement.
    """
    stack = fresh_stack(users_env={"METRICS_TABLE_COST_SECONDS": "86400"})
    role = make_url(stack.database.app_url).username
    assert role
    _reset(stack.database.url)
    seconds0, statements0, tenants0 = _db_totals(stack.users.url)

    admin = {"Authorization": f"Bearer {stack.secrets.admin_token}"}
    keys: dict[str, dict[str, str]] = {}
    for n in (30, 12):
        created = httpx.post(
            f"{stack.gateway.url}/admin/tenants",
            json={"name": f"dbtime-{uuid.uuid4().hex[:8]}"},
            headers=admin,
            timeout=10,
        )
        assert created.status_code == 201, created.text
        key = {"Authorization": f"Bearer {created.json()['api_key']}"}
        keys[str(created.json()["id"])] = key
        with httpx.Client(base_url=stack.gateway.url, headers=key, timeout=10) as client:
            for _ in range(n):
                email = f"{uuid.uuid4().hex}@example.com"
                r = client.post("/users", json={"email": email, "name": "x"})
                assert r.status_code == 201, r.text
                assert client.get("/users").status_code == 200
    # The top K is refreshed once a second: until then a new tenant's statements go to
    # "other" (counted all the same). One more request each, once both are in it.
    # Polled, not slept: on a loaded machine the refresh can come late.
    deadline = time.monotonic() + 15
    while True:
        time.sleep(0.5)
        for key in keys.values():
            answer = httpx.get(f"{stack.gateway.url}/users", headers=key, timeout=10)
            assert answer.status_code == 200
        if all(_db_totals(stack.users.url)[2].get(t, 0) > 0 for t in keys):
            break
        assert time.monotonic() < deadline, "the tenants never got their own label"

    server_s, calls = _server_seconds(stack.database.url, role, stack.database.name)
    seconds1, statements1, tenants1 = _db_totals(stack.users.url)
    client_s = seconds1 - seconds0
    statements = statements1 - statements0
    # Both tenants were charged under their own label.
    assert all(tenants1.get(t, 0) > 0 for t in keys), (keys.keys(), tenants1)
    assert tenants0.keys() <= tenants1.keys()
    # The SET LOCAL prepended to a transaction's first statement is a statement of its own
    # for PostgreSQL, one round trip for the service: calls >= statements.
    assert statements > 0 and calls >= statements, (calls, statements)
    print(f"db seconds: service {client_s:.4f}, PostgreSQL {server_s:.4f}, {statements} stmts")
    assert server_s > 0
    assert client_s >= server_s, (client_s, server_s)
    assert client_s - server_s <= statements * MAX_GAP_PER_STATEMENT_S, (client_s, server_s)
