"""tenantkit on a Citus coordinator: what only Citus can show (run by `make test-citus`)."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import psycopg2
import psycopg2.extensions
import pytest
from cluster import EARLY_TENANTS
from sqlalchemy import Engine
from sqlalchemy.engine import make_url

from kit.testing import Database
from services.tenancy.audit import find_isolation_problems
from services.tenancy.runtime import create_tenant_engine

WRITES_SECONDS = 6.0
MAX_WRITES = 400


@pytest.fixture(scope="module")
def coordinator(database: Database) -> Iterator[psycopg2.extensions.connection]:
    """A superuser's connection to the coordinator (autocommit)."""
    conn = psycopg2.connect(database.url, application_name="citus-tests")
    conn.autocommit = True
    yield conn
    conn.close()


@pytest.fixture(scope="module")
def app_engine(database: Database) -> Iterator[Engine]:
    engine = create_tenant_engine(database.app_url, application_name="citus-tests")
    yield engine
    engine.dispose()


def _rows(conn: psycopg2.extensions.connection, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    with conn.cursor() as cur:
        cur.execute(sql, args)
        return cur.fetchall() if cur.description else []


def _new_tenant(admin: httpx.Client, gateway: Any) -> tuple[int, httpx.Client]:
    created = admin.post("/admin/tenants", json={"name": f"citus-{uuid.uuid4().hex[:10]}"})
    assert created.status_code == 201, created.text
    body = created.json()
    client = httpx.Client(
        base_url=gateway.url, headers={"Authorization": f"Bearer {body['api_key']}"}, timeout=10
    )
    return int(body["id"]), client


def test_the_doc_distributed_the_tenant_tables_colocated(
    coordinator: psycopg2.extensions.connection,
) -> None:
    kinds = dict(
        _rows(
            coordinator,
            "SELECT table_name::text, citus_table_type FROM citus_tables ORDER BY 1",
        )
    )
    assert kinds == {
        "api_keys": "reference",
        "tenants": "reference",
        "tenant_row_ids": "distributed",
        "users": "distributed",
    }
    groups = _rows(
        coordinator,
        "SELECT DISTINCT colocation_id FROM citus_tables WHERE citus_table_type = 'distributed'",
    )
    assert len(groups) == 1


def test_rows_from_before_distribution_kept_their_ids_and_counters(
    database: Database, coordinator: psycopg2.extensions.connection
) -> None:
    rows = _rows(
        coordinator,
        "SELECT t.name, u.id FROM users u JOIN tenants t ON t.id = u.tenant_id "
        "WHERE t.name = ANY(%s) ORDER BY 1, 2",
        list(EARLY_TENANTS),
    )
    assert rows == [(t, i) for t in EARLY_TENANTS for i in (1, 2)]
    tenant = _rows(coordinator, "SELECT id FROM tenants WHERE name = %s", EARLY_TENANTS[0])[0][0]
    conn = psycopg2.connect(database.app_url)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(f"SET LOCAL app.tenant_id = '{int(tenant)}'")
            cur.execute(
                "INSERT INTO users (tenant_id, name) VALUES (%s, 'after') RETURNING id", (tenant,)
            )
            row = cur.fetchone()
    finally:
        conn.close()
    assert row == (3,)


def test_users_service_sets_the_tenant_in_its_own_round_trip_on_citus(
    users_service: Any,
) -> None:
    ready = httpx.get(f"{users_service.url}/readyz", timeout=10)
    assert ready.status_code == 200
    assert ready.json()["tenant_setting"] == {"mode": "auto", "citus": True, "form": "separate"}


def test_audit_finds_every_shard_sealed(app_engine: Engine, coordinator: Any) -> None:
    shards = _rows(
        coordinator, "SELECT count(*) FROM pg_dist_shard WHERE logicalrelid = 'users'::regclass"
    )
    assert shards[0][0] >= 2
    assert find_isolation_problems(app_engine) == []


def _on_worker_of_shard(
    database: Database, coordinator: psycopg2.extensions.connection, sql: str
) -> int:
    """Run `sql` ({shard} = the shard's name) on the worker of users' first shard; its id."""
    shard_id, shard, port = _rows(
        coordinator,
        "SELECT shardid, shard_name::text, nodeport FROM citus_shards "
        "WHERE table_name = 'users'::regclass ORDER BY shardid LIMIT 1",
    )[0]
    conn = psycopg2.connect(make_url(database.url).set(port=port).render_as_string(False))
    conn.autocommit = True
    try:
        _rows(conn, sql.format(shard=shard))
    finally:
        conn.close()
    return int(shard_id)


def test_audit_names_a_shard_that_lost_force_row_level_security(
    database: Database, app_engine: Engine, coordinator: psycopg2.extensions.connection
) -> None:
    # Only that one shard, on its worker: the shell table on the coordinator stays forced.
    shard_id = _on_worker_of_shard(
        database, coordinator, "ALTER TABLE {shard} NO FORCE ROW LEVEL SECURITY"
    )
    try:
        problems = find_isolation_problems(app_engine)
        assert problems == [f"shard {shard_id} of users does not have row-level security forced"]
    finally:
        _on_worker_of_shard(database, coordinator, "ALTER TABLE {shard} FORCE ROW LEVEL SECURITY")
    assert find_isolation_problems(app_engine) == []


def test_audit_names_a_shard_without_its_policy(
    database: Database, app_engine: Engine, coordinator: psycopg2.extensions.connection
) -> None:
    policy = _rows(coordinator, "SELECT policyname FROM pg_policies WHERE tablename = 'users'")
    assert len(policy) == 1
    name = policy[0][0]
    definition = _rows(
        coordinator,
        "SELECT pg_get_expr(polqual, polrelid) FROM pg_policy WHERE polrelid = 'users'::regclass",
    )[0][0]
    shard_id = _on_worker_of_shard(database, coordinator, f"DROP POLICY {name} ON {{shard}}")
    try:
        problems = find_isolation_problems(app_engine)
        assert problems == [
            f"shard {shard_id} of users has no row-level security policy for tenantkit_app"
        ]
    finally:
        _on_worker_of_shard(
            database,
            coordinator,
            f"CREATE POLICY {name} ON {{shard}} USING ({definition}) WITH CHECK ({definition})",
        )
    assert find_isolation_problems(app_engine) == []


def test_audit_refuses_a_role_whose_tenant_setting_stays_on_the_coordinator(
    database: Database, coordinator: psycopg2.extensions.connection
) -> None:
    _rows(coordinator, "ALTER ROLE tenantkit_app RESET citus.propagate_set_commands")
    try:
        engine = create_tenant_engine(database.app_url, application_name="citus-tests")
        try:
            problems = find_isolation_problems(engine)
        finally:
            engine.dispose()
        assert problems == [
            "role tenantkit_app has citus.propagate_set_commands = 'none', not 'local' "
            "(the workers would never see the tenant)"
        ]
    finally:
        _rows(coordinator, "ALTER ROLE tenantkit_app SET citus.propagate_set_commands = 'local'")


def test_isolating_a_tenant_under_writes_loses_nothing(
    gateway: Any, admin: httpx.Client, coordinator: psycopg2.extensions.connection
) -> None:
    tenant, client = _new_tenant(admin, gateway)
    neighbour, other = _new_tenant(admin, gateway)
    assert other.post("/users", json={"name": "neighbour"}).status_code == 201
    statuses: list[int] = []
    ids: list[int] = []
    stop = threading.Event()

    def write() -> None:
        deadline = time.monotonic() + WRITES_SECONDS * 4
        while len(statuses) < MAX_WRITES and time.monotonic() < deadline:
            if stop.is_set() and len(statuses) >= 10:
                return
            response = client.post("/users", json={"name": f"w{len(statuses)}"})
            statuses.append(response.status_code)
            if response.status_code == 201:
                ids.append(response.json()["id"])

    writer = threading.Thread(target=write)
    writer.start()
    time.sleep(0.5)
    try:
        before = _rows(
            coordinator, "SELECT get_shard_id_for_distribution_column('users', %s)", tenant
        )[0][0]
        # block_writes: the logical (non-blocking) mode never finished here under concurrent
        # counter updates (docs/scaling.md §6); a bound keeps a stall from hanging the suite.
        _rows(coordinator, "SET statement_timeout = '120s'")
        new_shard = _rows(
            coordinator,
            "SELECT isolate_tenant_to_new_shard('users', %s, 'CASCADE',"
            " shard_transfer_mode => 'block_writes')",
            tenant,
        )[0][0]
    finally:
        stop.set()
        writer.join(timeout=WRITES_SECONDS * 5)
        client.close()
    assert not writer.is_alive()
    assert new_shard != before
    assert set(statuses) == {201} and len(statuses) >= 10, statuses
    # Per-tenant ids carried on: consecutive from 1, none lost or repeated.
    assert ids == list(range(1, len(ids) + 1))
    owned = _rows(
        coordinator,
        "SELECT count(*), min(tenant_id), max(tenant_id) FROM users WHERE tenant_id = %s",
        tenant,
    )
    assert owned[0] == (len(ids), tenant, tenant)
    # The new shard covers that tenant's hash value alone; its counters moved with it
    # (CASCADE, co-located); the neighbour's row is where it was.
    ranges = _rows(
        coordinator,
        "SELECT shardminvalue = shardmaxvalue FROM pg_dist_shard WHERE shardid = %s",
        new_shard,
    )
    assert ranges == [(True,)]
    counters = _rows(
        coordinator, "SELECT get_shard_id_for_distribution_column('tenant_row_ids', %s)", tenant
    )[0][0]
    assert counters not in (before, new_shard)
    assert _rows(
        coordinator,
        "SELECT shardminvalue = shardmaxvalue FROM pg_dist_shard WHERE shardid = %s",
        counters,
    ) == [(True,)]
    listed = other.get("/users")
    other.close()
    assert [u["name"] for u in listed.json()] == ["neighbour"]
