"""The RLS predicate is an index condition, so the wall costs an index lookup, not a scan."""

from __future__ import annotations

import psycopg2
import psycopg2.extensions
import pytest

from kit.testing import Database
from services.users.tests.conftest import owner_rows

TENANTS = 40
USERS_PER_TENANT = 250


@pytest.fixture(scope="module")
def crowded_tenant(owner: psycopg2.extensions.connection) -> int:
    """Enough tenants and rows (10,000) that the planner prefers the index; statistics fresh."""
    ids = [
        owner_rows(
            owner, "INSERT INTO tenants (name) VALUES (%s) RETURNING id", f"crowd-{i}-{id(owner)}"
        )[0][0]
        for i in range(TENANTS)
    ]
    owner_rows(
        owner,
        "INSERT INTO users (tenant_id, name, email) "
        "SELECT t, 'user ' || n, 'user' || n || '@t' || t || '.example' "
        "FROM unnest(%s::bigint[]) AS t, generate_series(1, %s) AS n",
        ids,
        USERS_PER_TENANT,
    )
    owner_rows(owner, "ANALYZE users")
    return int(ids[TENANTS // 2])


def _plan(database: Database, tenant: int, query: str) -> str:
    conn = psycopg2.connect(database.app_url)
    try:
        with conn.cursor() as cur:
            cur.execute(f"SET LOCAL app.tenant_id = '{tenant}'")
            cur.execute(f"EXPLAIN {query}")
            return "\n".join(row[0] for row in cur.fetchall())
    finally:
        conn.close()


def _index_conditions(plan: str) -> str:
    return "\n".join(line for line in plan.splitlines() if "Index Cond" in line)


@pytest.mark.parametrize(
    ("query", "index"),
    [
        ("SELECT * FROM users ORDER BY id LIMIT 100", "users_pkey"),
        ("SELECT * FROM users WHERE id = 17", "users_pkey"),
        (
            "SELECT * FROM users WHERE email_normalized = 'user7@x.example'",
            "users_tenant_email_key",
        ),
    ],
)
def test_rls_predicate_is_an_index_condition(
    database: Database, crowded_tenant: int, query: str, index: str
) -> None:
    plan = _plan(database, crowded_tenant, query)
    assert index in plan, plan
    conditions = _index_conditions(plan)
    assert (
        "tenant_id = (NULLIF(current_setting('app.tenant_id'::text, true), ''::text))::bigint"
        in conditions
    ), plan
    assert "Seq Scan" not in plan, plan


def test_a_tenant_sees_only_its_rows_among_many(database: Database, crowded_tenant: int) -> None:
    conn = psycopg2.connect(database.app_url)
    try:
        with conn.cursor() as cur:
            cur.execute(f"SET LOCAL app.tenant_id = '{crowded_tenant}'")
            cur.execute("SELECT count(*), min(tenant_id), max(tenant_id) FROM users")
            assert cur.fetchone() == (USERS_PER_TENANT, crowded_tenant, crowded_tenant)
    finally:
        conn.close()
