"""Rows and bytes per tenant per tenant table, as a real users service reports them (SPEC §10)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

import httpx
import psycopg2
from prometheus_client.parser import text_string_to_metric_families

from kit.stacks import Stack


def _gauges(url: str, name: str) -> dict[tuple[str, str], float]:
    text = httpx.get(f"{url}/metrics", timeout=10).text
    return {
        (s.labels["tenant"], s.labels["table"]): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name
    }


def _direct(owner_url: str, tenant_id: int) -> tuple[int, int]:
    """What the superuser counts for the tenant, bypassing RLS and the service."""
    with psycopg2.connect(owner_url) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT count(*), coalesce(sum(pg_column_size(u.*)), 0)"
            " FROM public.users u WHERE tenant_id = %s",
            (tenant_id,),
        )
        count, size = cur.fetchone()
    conn.close()
    return int(count), int(size)


def _tenant_with_users(gateway: str, admin_token: str, n: int) -> tuple[int, httpx.Client]:
    admin = {"Authorization": f"Bearer {admin_token}"}
    created = httpx.post(
        f"{gateway}/admin/tenants",
        json={"name": f"cost-{uuid.uuid4().hex[:8]}"},
        headers=admin,
        timeout=10,
    )
    assert created.status_code == 201, created.text
    body = created.json()
    client = httpx.Client(
        base_url=gateway, headers={"Authorization": f"Bearer {body['api_key']}"}, timeout=10
    )
    _add_users(client, n)
    return int(body["id"]), client


def _add_users(client: httpx.Client, n: int) -> None:
    for _ in range(n):
        # Names of varying length, so bytes are not just rows x a constant.
        email = f"{uuid.uuid4().hex}@example.com"
        r = client.post("/users", json={"email": email, "name": "n" * (len(email) % 7 + 1)})
        assert r.status_code == 201, r.text


def _wait_for(
    users_url: str, expected: dict[str, tuple[int, int]]
) -> dict[str, tuple[float, float]]:
    """The gauges once they show `expected` (recounted at most once a second here)."""
    deadline = time.monotonic() + 15
    while True:
        rows = _gauges(users_url, "service_tenant_table_rows")
        size = _gauges(users_url, "service_tenant_table_bytes")
        seen = {
            t: (rows.get((t, "public.users"), -1), size.get((t, "public.users"), -1))
            for t in expected
        }
        if seen == expected or time.monotonic() > deadline:
            return seen
        time.sleep(0.3)


def test_rows_and_bytes_per_tenant_equal_a_direct_count_and_follow_inserts(
    fresh_stack: Callable[..., Stack],
) -> None:
    stack = fresh_stack(users_env={"METRICS_TABLE_COST_SECONDS": "1"})
    token = stack.secrets.admin_token
    a, a_client = _tenant_with_users(stack.gateway.url, token, 3)
    b, b_client = _tenant_with_users(stack.gateway.url, token, 5)
    try:
        expected = {str(a): _direct(stack.database.url, a), str(b): _direct(stack.database.url, b)}
        assert expected[str(a)][0] == 3 and expected[str(b)][0] == 5
        assert _wait_for(stack.users.url, expected) == expected

        _add_users(a_client, 4)
        again = {str(a): _direct(stack.database.url, a), str(b): expected[str(b)]}
        assert again[str(a)][0] == 7 and again[str(a)][1] > expected[str(a)][1]
        assert _wait_for(stack.users.url, again) == again
    finally:
        a_client.close()
        b_client.close()
