"""The table-cost gauges' bounds, against the session's real PostgreSQL as the services' role."""

from __future__ import annotations

import uuid

import psycopg2
from sqlalchemy import Engine

from kit.testing import Database
from services.tenancy.runtime import create_tenant_engine
from services.tenancy.tablecost import TableCost
from services.tenancy.topk import TopTenants


class Clock:
    """A hand-moved clock, so the refresh period is tested without sleeping."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _new_tenant_with_users(owner_url: str, n: int) -> str:
    with psycopg2.connect(owner_url) as conn, conn.cursor() as cur:
        cur.execute("INSERT INTO tenants (name) VALUES (%s) RETURNING id", (uuid.uuid4().hex,))
        (tenant_id,) = cur.fetchone()
        for _ in range(n):
            cur.execute(
                "INSERT INTO users (tenant_id, name, email) VALUES (%s, 'u', %s)",
                (tenant_id, f"{uuid.uuid4().hex}@example.com"),
            )
    conn.close()
    return str(tenant_id)


def _add_user(owner_url: str, tenant_id: str) -> None:
    with psycopg2.connect(owner_url) as conn, conn.cursor() as cur:
        cur.execute(
            "INSERT INTO users (tenant_id, name, email) VALUES (%s, 'u', %s)",
            (int(tenant_id), f"{uuid.uuid4().hex}@example.com"),
        )
    conn.close()


def _rows(cost: TableCost) -> dict[str, float]:
    rows = next(iter(cost.collect()))
    return {
        s.labels["tenant"]: s.value for s in rows.samples if s.labels["table"] == "public.users"
    }


def _cost(database: Database, top: TopTenants, clock: Clock) -> tuple[TableCost, Engine]:
    engine = create_tenant_engine(database.app_url, application_name="tablecost-test")
    return TableCost("service", engine, top, refresh_seconds=60, clock=clock), engine


def test_only_top_k_tenants_are_counted_and_only_once_per_period(database: Database) -> None:
    heavy = _new_tenant_with_users(database.url, 3)
    light = _new_tenant_with_users(database.url, 2)
    clock = Clock()
    top = TopTenants(1)
    for _ in range(5):
        top.record(heavy)
    top.record(light)
    top.refresh()
    cost, engine = _cost(database, top, clock)
    try:
        # K = 1: the light tenant gets no series and costs no scan.
        assert _rows(cost) == {heavy: 3}

        _add_user(database.url, heavy)
        clock.now += 59
        assert _rows(cost) == {heavy: 3}  # cached: a scrape inside the period scans nothing
        clock.now += 1
        assert _rows(cost) == {heavy: 4}
    finally:
        engine.dispose()


def test_each_tenant_counts_only_its_own_rows_and_junk_labels_are_skipped(
    database: Database,
) -> None:
    """Counted under the tenant's own RLS (other tenants' users exist in this database).

    Top-K names come from requests: one that is not a tenant id is never spliced into SQL.
    """
    tenant = _new_tenant_with_users(database.url, 2)
    clock = Clock()
    top = TopTenants(5)
    for name in (tenant, "1 OR true", "-1"):
        top.record(name)
    top.refresh()
    cost, engine = _cost(database, top, clock)
    try:
        assert _rows(cost) == {tenant: 2}
    finally:
        engine.dispose()
