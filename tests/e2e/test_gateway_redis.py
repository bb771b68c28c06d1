"""Redis shared by replicas: the rate limit holds across them, and Redis dying is survivable."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable

import httpx

from gateway.tests.factories import bearer, create_tenant
from kit.procs import ServiceProcess
from kit.servers import RedisServer


async def _burst(
    replicas: list[ServiceProcess], key: str, count: int
) -> tuple[list[httpx.Response], float]:
    """`count` requests alternating between the replicas, all at once, on warm connections.

    One request per replica first warms its tenant cache and opens the connections, and the
    two tokens it took refill (GCRA: a full second's worth within one second) before the burst.
    """
    headers = bearer(key)
    async with httpx.AsyncClient(timeout=10, limits=httpx.Limits(max_connections=count)) as client:

        async def hit(i: int) -> httpx.Response:
            return await client.get(f"{replicas[i % 2].url}/users", headers=headers)

        warm = await asyncio.gather(*(hit(i) for i in range(2)))
        assert [r.status_code for r in warm] == [200, 200]
        await asyncio.sleep(1.0)
        started = time.monotonic()
        responses = list(await asyncio.gather(*(hit(i) for i in range(count))))
        return responses, time.monotonic() - started


def test_rate_limit_holds_across_two_gateways_sharing_redis(
    own_redis: RedisServer, start_service: Callable[..., ServiceProcess], admin: httpx.Client
) -> None:
    replicas = [start_service("gateway", env={"REDIS_URL": own_redis.url}) for _ in range(2)]
    limit = 5
    # One shared budget lets through the burst (= limit) plus what refills while the burst
    # lasts; a budget per replica would let each replica's burst through: 2 x limit at least
    # (each replica gets 7 or 8 requests). The two differ while the burst lasts under 0.8 s;
    # a busier machine gets another try.
    for _attempt in range(5):
        tenant = create_tenant(admin, rate_limit_per_second=limit)
        responses, lasted = asyncio.run(_burst(replicas, tenant["api_key"], 3 * limit))
        if lasted < 0.8:
            break
    statuses = [r.status_code for r in responses]
    allowed = statuses.count(200)
    shared_bound = limit + math.floor(lasted * limit) + 1
    assert shared_bound < 2 * limit, f"burst took {lasted:.2f} s: too slow to tell"
    assert limit <= allowed <= shared_bound, (statuses, lasted)
    assert set(statuses) == {200, 429}
    for response in responses:
        assert response.headers["ratelimit-limit"] == str(limit)
        if response.status_code == 429:
            assert int(response.headers["retry-after"]) >= 1
            assert response.json() == {"detail": "rate limit exceeded"}


def test_redis_killed_mid_test_leaves_known_tenants_served(
    own_redis: RedisServer, start_service: Callable[..., ServiceProcess], admin: httpx.Client
) -> None:
    gateway = start_service("gateway", env={"REDIS_URL": own_redis.url})
    known = create_tenant(admin)
    url = f"{gateway.url}/users"
    created = httpx.post(url, json={"name": "Before"}, headers=bearer(known["api_key"]))
    assert created.status_code == 201

    own_redis.kill()

    for name in ("During 1", "During 2"):
        response = httpx.post(url, json={"name": name}, headers=bearer(known["api_key"]), timeout=5)
        assert response.status_code == 201
    listed = httpx.get(url, headers=bearer(known["api_key"]), timeout=5)
    assert [u["name"] for u in listed.json()] == ["Before", "During 1", "During 2"]
    ready = httpx.get(f"{gateway.url}/readyz", timeout=5)
    assert ready.status_code == 200
    assert ready.json()["status"] == "degraded"
    assert "redis is down" in gateway.tail(200)
    # Logged once per transition, not once per request.
    assert gateway.tail(200).count("redis is down") == 1
