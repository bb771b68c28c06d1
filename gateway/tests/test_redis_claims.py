"""What the gateway README promises about Redis, each checked against a real (or hung) Redis."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import psycopg2
import pytest
import redis

from gateway.cache import LOCAL_TTL_CAP_SECONDS
from gateway.ratelimit import GCRA_SCRIPT
from gateway.tests.conftest import StartGateway
from gateway.tests.factories import bearer, create_tenant, settled_tenant, wait_for
from gateway.tests.test_tenant_cache import counters
from kit.servers import RedisServer
from kit.testing import Database, Secrets, silent_listener


@pytest.fixture
def hung_redis() -> Iterator[str]:
    """A redis:// URL whose server accepts connections and never answers a command."""
    with silent_listener() as address:
        yield f"redis://{address}/0"


def test_a_hung_redis_costs_a_quarter_second_once_then_the_breaker_skips_it(
    start_gateway: StartGateway, hung_redis: str, echo_admin: httpx.Client, secrets: Secrets
) -> None:
    # /healthz: /readyz itself would wait on the hung Redis for its 0.25 s.
    gateway = start_gateway({"REDIS_URL": hung_redis}, ready_path="/healthz")
    tenant = create_tenant(echo_admin)
    url = f"{gateway.url}/users"
    with httpx.Client(headers=bearer(tenant["api_key"]), timeout=10) as client:
        started = time.monotonic()
        # Without the socket timeout this would hang (the client gives up after 10 s).
        assert client.get(url).status_code == 200
        assert time.monotonic() - started < 2.0
        # Breaker open: the next requests skip Redis; 20 of them each waiting 0.25 s (or more,
        # a cache read and a rate-limit call) would take 5 s at least.
        started = time.monotonic()
        for _ in range(20):
            assert client.get(url).status_code == 200
        assert time.monotonic() - started < 3.0
    ready = httpx.get(f"{gateway.url}/readyz", timeout=10)
    assert ready.status_code == 200 and ready.json()["redis"] == "down"
    assert counters(gateway.url, secrets.admin_token)["gateway_redis_up"] == 0


def test_gateway_redis_up_follows_redis_going_and_coming_back(
    start_gateway: StartGateway, own_redis: RedisServer, secrets: Secrets
) -> None:
    gateway = start_gateway({"REDIS_URL": own_redis.url})
    assert counters(gateway.url, secrets.admin_token)["gateway_redis_up"] == 1
    own_redis.kill()
    assert httpx.get(f"{gateway.url}/readyz", timeout=10).json()["redis"] == "down"
    assert counters(gateway.url, secrets.admin_token)["gateway_redis_up"] == 0
    own_redis.start()
    wait_for(
        lambda: httpx.get(f"{gateway.url}/readyz", timeout=10).json()["redis"] == "up", within=5
    )
    assert counters(gateway.url, secrets.admin_token)["gateway_redis_up"] == 1


def test_a_known_tenant_costs_no_redis_call_but_the_rate_limiters(
    start_gateway: StartGateway, own_redis: RedisServer, echo_admin: httpx.Client
) -> None:
    # A call per request (no leases, gateway/ratelease.py): the count is then exact.
    gateway = start_gateway({"REDIS_URL": own_redis.url, "RATE_LIMIT_LEASE_MAX": "1"})
    tenant = settled_tenant(echo_admin)
    url = f"{gateway.url}/users"
    with httpx.Client(headers=bearer(tenant["api_key"]), timeout=10) as client:
        for _ in range(3):
            assert client.get(url).status_code == 200
        stats = redis.Redis.from_url(own_redis.admin_url, decode_responses=True)
        try:
            stats.config_resetstat()
            started = time.monotonic()
            for _ in range(20):
                assert client.get(url).status_code == 200
            elapsed = time.monotonic() - started
            calls = {
                name.removeprefix("cmdstat_"): value["calls"]
                for name, value in stats.info("commandstats").items()
            }
        finally:
            stats.close()
    calls = {c: n for c, n in calls.items() if not c.startswith(("config", "info"))}
    # The usage book's flush (gateway/usage.py) writes once a second whatever the traffic:
    # a few commands per tenant and second, not one per request.
    flushed = sum(calls.pop(c, 0) for c in ("hincrby", "hincrbyfloat", "expire", "multi", "exec"))
    assert flushed <= 8 * (int(elapsed) + 2), (flushed, elapsed)
    # A pooled connection opened meanwhile says hello once; that is per connection, not request.
    opened = sum(calls.pop(c, 0) for c in ("hello", "auth", "client|setinfo", "select"))
    assert opened <= 8, opened
    # One rate-limit script per request; commandstats also counts the script's own TIME,
    # GET and SET (one each per allowed request). A cache read would be a second GET.
    assert all(c in GCRA_SCRIPT for c in ("'TIME'", "'GET'", "'SET'"))
    assert calls == {"evalsha": 20, "time": 20, "get": 20, "set": 20}, calls


def test_resubscribing_after_redis_returns_clears_the_in_process_cache(
    start_gateway: StartGateway,
    own_redis: RedisServer,
    echo_admin: httpx.Client,
    database: Database,
) -> None:
    gateway = start_gateway({"REDIS_URL": own_redis.url, "TENANT_CACHE_TTL_SECONDS": "60"})
    tenant = settled_tenant(echo_admin)
    url = f"{gateway.url}/users"
    assert httpx.get(url, headers=bearer(tenant["api_key"])).status_code == 200
    warmed = time.monotonic()
    # A change no message announces (made in SQL): only the re-subscription's clear shows it.
    with psycopg2.connect(database.url) as conn, conn.cursor() as cur:
        cur.execute("UPDATE tenants SET status = 'suspended' WHERE id = %s", (tenant["id"],))
    conn.close()
    assert httpx.get(url, headers=bearer(tenant["api_key"])).status_code == 200  # cached
    own_redis.stop()
    own_redis.start()  # empty: Redis holds no stale copy either
    wait_for(lambda: "invalidation channel re-subscribed" in gateway.tail(50), within=4)
    status = httpx.get(url, headers=bearer(tenant["api_key"])).status_code
    # Still inside the in-process TTL: without the clear the stale entry would answer 200.
    assert time.monotonic() - warmed < LOCAL_TTL_CAP_SECONDS, "too slow to tell"
    assert status == 403


def test_the_default_rate_limit_is_100_per_second(
    start_gateway: StartGateway, echo_admin: httpx.Client
) -> None:
    gateway = start_gateway({"DEFAULT_RATE_LIMIT_PER_SECOND": None})
    tenant = create_tenant(echo_admin)
    answer = httpx.get(f"{gateway.url}/users", headers=bearer(tenant["api_key"]), timeout=10)
    assert answer.status_code == 200
    assert answer.headers["ratelimit-limit"] == "100"
