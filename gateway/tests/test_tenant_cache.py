"""Caching that stays correct: zero queries in steady state, bounded staleness, no DB floods."""

from __future__ import annotations

import secrets as secrets_module
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import psycopg2
from prometheus_client.parser import text_string_to_metric_families

from gateway.apikeys import generate_key
from gateway.invalidation import SECOND_PASS_DELAY_SECONDS
from gateway.tests.conftest import StartGateway
from gateway.tests.factories import bearer, create_tenant, settled_tenant, wait_for
from kit.testing import Database


def counters(admin: httpx.Client | str, token: str | None = None) -> dict[str, float]:
    """Sample name (with labels) -> value from the gateway's /metrics (it needs the token).

    `admin`: a client carrying the admin token, or a gateway URL with `token`.
    """
    if isinstance(admin, str):
        headers = {"Authorization": f"Bearer {token}"}
        response = httpx.get(f"{admin}/metrics", headers=headers, timeout=10)
    else:
        response = admin.get("/metrics")
    assert response.status_code == 200, response.text
    text = response.text
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            values[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return values


def test_known_tenant_in_steady_state_costs_no_database_query(
    echo_gateway, echo_admin: httpx.Client, echo_client: httpx.Client
) -> None:
    tenant = create_tenant(echo_admin)
    # Creating a tenant invalidates its entries twice, the second time 0.5 s later (a
    # replica may have cached "no such tenant"); steady state begins after that.
    time.sleep(SECOND_PASS_DELAY_SECONDS + 0.3)
    assert echo_client.get("/users", headers=bearer(tenant["api_key"])).status_code == 200
    before = counters(echo_admin)
    for _ in range(20):
        assert echo_client.get("/users", headers=bearer(tenant["api_key"])).status_code == 200
    after = counters(echo_admin)
    assert after["gateway_tenant_db_lookups_total"] == before["gateway_tenant_db_lookups_total"]
    hits = [f"gateway_tenant_cache_total{{result={r}}}" for r in ("hit_local", "hit_redis")]
    # Key and tenant, 20 times each, all from a cache (in-process unless its 5 s ran out).
    assert sum(after.get(h, 0) - before.get(h, 0) for h in hits) >= 40
    assert (
        after["gateway_requests_total{status=200}"] - before["gateway_requests_total{status=200}"]
        >= 20
    )


def test_repeated_unknown_key_reaches_the_database_once(
    echo_admin: httpx.Client, echo_client: httpx.Client
) -> None:
    unknown = generate_key()
    before = counters(echo_admin)["gateway_tenant_db_lookups_total"]
    for _ in range(10):
        assert echo_client.get("/users", headers=bearer(unknown)).status_code == 401
    assert counters(echo_admin)["gateway_tenant_db_lookups_total"] - before == 1


def test_concurrent_requests_for_an_uncached_key_share_one_database_lookup(
    echo_admin: httpx.Client, echo_client: httpx.Client
) -> None:
    unknown = generate_key()
    before = counters(echo_admin)["gateway_tenant_db_lookups_total"]

    def hit(_: int) -> int:
        return echo_client.get("/users", headers=bearer(unknown)).status_code

    # One shared client and a thread per request: the burst arrives together, well inside
    # the few seconds a "no such key" answer stays cached.
    with ThreadPoolExecutor(max_workers=32) as pool:
        assert set(pool.map(hit, range(32))) == {401}
    assert counters(echo_admin)["gateway_tenant_db_lookups_total"] - before == 1


def test_malformed_keys_never_reach_the_database(
    echo_admin: httpx.Client, echo_client: httpx.Client
) -> None:
    before = counters(echo_admin)["gateway_tenant_db_lookups_total"]
    for i in range(20):
        assert echo_client.get("/users", headers=bearer(f"tk_bad{i}")).status_code == 401
    assert counters(echo_admin)["gateway_tenant_db_lookups_total"] == before


def test_change_made_directly_in_sql_is_seen_within_the_ttl(
    start_gateway: StartGateway, echo_admin: httpx.Client, database: Database
) -> None:
    gateway = start_gateway({"TENANT_CACHE_TTL_SECONDS": "2"})
    tenant = settled_tenant(echo_admin)
    url = f"{gateway.url}/users"
    assert httpx.get(url, headers=bearer(tenant["api_key"])).status_code == 200
    with psycopg2.connect(database.url) as conn, conn.cursor() as cur:
        cur.execute("UPDATE tenants SET status = 'suspended' WHERE id = %s", (tenant["id"],))
    conn.close()
    # SQL publishes nothing: the cached entry still answers, until its TTL ends.
    assert httpx.get(url, headers=bearer(tenant["api_key"])).status_code == 200
    wait_for(
        lambda: httpx.get(url, headers=bearer(tenant["api_key"])).status_code == 403, within=2.5
    )


def test_tenant_inserted_in_sql_is_usable_after_a_cached_404(
    start_gateway: StartGateway, database: Database
) -> None:
    gateway = start_gateway({"GATEWAY_AUTH_MODES": "header", "GATEWAY_BASE_DOMAIN": None})
    # Far above the identity sequence, so no tenant created later can collide with it.
    future_id = 10**12 + secrets_module.randbelow(10**9)
    url = f"{gateway.url}/users"
    assert httpx.get(url, headers={"X-Tenant-ID": str(future_id)}).status_code == 404
    with psycopg2.connect(database.url) as conn, conn.cursor() as cur:
        cur.execute(
            "INSERT INTO tenants (id, name) VALUES (%s, %s)", (future_id, f"sql tenant {future_id}")
        )
    conn.close()
    # Negative entries live at most 5 s (both levels together).
    wait_for(
        lambda: httpx.get(url, headers={"X-Tenant-ID": str(future_id)}).status_code == 200,
        within=5.5,
    )


def test_metrics_count_rate_limited_requests(
    echo_gateway, echo_admin: httpx.Client, echo_client: httpx.Client
) -> None:
    tenant = create_tenant(echo_admin, rate_limit_per_second=1)
    before = counters(echo_admin)["gateway_rate_limited_total"]
    statuses = [
        echo_client.get("/users", headers=bearer(tenant["api_key"])).status_code for _ in range(5)
    ]
    assert 429 in statuses
    after = counters(echo_admin)["gateway_rate_limited_total"]
    assert after - before == statuses.count(429)
