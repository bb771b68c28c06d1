"""Dependencies going away: Redis down degrades, PostgreSQL down keeps cached tenants only."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from gateway.tests.conftest import StartGateway
from gateway.tests.factories import bearer, create_tenant, settled_tenant
from kit.servers import PgServer, RedisServer
from kit.testing import new_database


def test_redis_down_keeps_serving_reports_degraded_and_recovers(
    start_gateway: StartGateway, own_redis: RedisServer, echo_admin: httpx.Client
) -> None:
    gateway = start_gateway({"REDIS_URL": own_redis.url})
    # Settled: the creates' repeated invalidation must not drop the entry warmed below.
    known = create_tenant(echo_admin)
    fresh = settled_tenant(echo_admin, rate_limit_per_second=1)
    url = f"{gateway.url}/users"
    assert httpx.get(url, headers=bearer(known["api_key"])).status_code == 200
    own_redis.kill()

    started = time.monotonic()
    # Known tenant (in-process cache) and a tenant never seen (from PostgreSQL) both served.
    assert httpx.get(url, headers=bearer(known["api_key"])).status_code == 200
    statuses = [httpx.get(url, headers=bearer(fresh["api_key"])).status_code for _ in range(5)]
    assert time.monotonic() - started < 5
    # Rate limiting falls back to this replica's share (all of it: GATEWAY_REPLICAS=1), not
    # to "no limit": a 1/s tenant gets its one-request burst, then 429.
    assert statuses[0] == 200 and statuses.count(429) >= 3, statuses
    ready = httpx.get(f"{gateway.url}/readyz")
    assert ready.status_code == 200
    assert ready.json()["status"] == "degraded" and ready.json()["redis"] == "down"

    own_redis.start()
    deadline = time.monotonic() + 10
    while httpx.get(f"{gateway.url}/readyz").json()["status"] != "ok":
        assert time.monotonic() < deadline, "gateway never noticed Redis came back"
        time.sleep(0.2)
    limited = [httpx.get(url, headers=bearer(fresh["api_key"])).status_code for _ in range(3)]
    assert 429 in limited


@pytest.fixture
def own_postgres(kit_workdir: Path, request: pytest.FixtureRequest) -> Iterator[PgServer]:
    """A PostgreSQL for this test alone, so stopping it disturbs nobody else."""
    server = PgServer(kit_workdir / f"pg-{request.node.name}", for_tests=True)
    server.start()
    yield server
    server.stop()


def test_postgres_down_serves_cached_tenants_and_answers_503_fast_for_others(
    start_gateway: StartGateway, own_postgres: PgServer, own_redis: RedisServer, kit_workdir: Path
) -> None:
    database = new_database(own_postgres, log_dir=kit_workdir / "logs")
    gateway = start_gateway(
        {
            "GATEWAY_DATABASE_URL": database.gateway_url,
            "REDIS_URL": own_redis.url,
            "TENANT_CACHE_TTL_SECONDS": "60",
        }
    )
    with httpx.Client(base_url=gateway.url, headers=bearer(gateway.env["ADMIN_TOKEN"])) as admin:
        # Settled: the creates' repeated invalidation (0.5 s later) would drop the entry
        # warmed below, and only the gateway's memory can answer once both servers are gone.
        cached, other = create_tenant(admin), settled_tenant(admin)
    url = f"{gateway.url}/users"
    assert httpx.get(url, headers=bearer(cached["api_key"])).status_code == 200
    # Redis too, so that only the gateway's own memory can answer.
    own_redis.kill()
    own_postgres.stop()

    assert httpx.get(url, headers=bearer(cached["api_key"])).status_code == 200
    started = time.monotonic()
    response = httpx.get(url, headers=bearer(other["api_key"]), timeout=10)
    assert response.status_code == 503
    assert time.monotonic() - started < 5
    ready = httpx.get(f"{gateway.url}/readyz", timeout=10)
    assert ready.status_code == 503 and ready.json()["postgres"] == "down"
