"""Rate limits hold when Redis is busy (pool exhausted) and when Redis is gone."""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import httpx
import redis

from gateway.tests.factories import bearer, create_tenant
from kit.procs import ServiceProcess
from kit.servers import RedisServer
from kit.stacks import Secrets


def _fallbacks(gateway: ServiceProcess, secrets: Secrets, reason: str) -> float:
    text = httpx.get(f"{gateway.url}/metrics", headers=bearer(secrets.admin_token), timeout=5).text
    found = re.search(
        rf'^gateway_ratelimit_fallback_total\{{reason="{reason}"\}} (\S+)$', text, re.M
    )
    return float(found.group(1)) if found else 0.0


async def _flood(
    url: str, headers: dict[str, str], *, count: int, concurrency: int
) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=10) as client:
        gate = asyncio.Semaphore(concurrency)

        async def one() -> httpx.Response:
            async with gate:
                return await client.get(url, headers=headers)

        return list(await asyncio.gather(*(one() for _ in range(count))))


@contextmanager
def _stalls(server: RedisServer, *, pause_ms: int, every: float) -> Iterator[None]:
    """Pause Redis's clients for `pause_ms` every `every` seconds while the block runs.

    A paused call holds the gateway's only connection longer than the pool wait (50 ms) yet
    shorter than the socket timeout (250 ms): the others must find the pool exhausted, and
    none of them may take Redis for down. Without it a fast Redis rarely lets them overlap.
    """
    stop = threading.Event()
    client = redis.Redis.from_url(server.admin_url)

    def loop() -> None:
        while not stop.is_set():
            client.execute_command("CLIENT", "PAUSE", pause_ms, "ALL")
            stop.wait(every)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        client.execute_command("CLIENT", "UNPAUSE")
        client.close()


def test_an_exhausted_redis_pool_keeps_limits_enforced_and_redis_up(
    own_redis: RedisServer,
    start_service: Callable[..., ServiceProcess],
    admin: httpx.Client,
    secrets: Secrets,
) -> None:
    gateway = start_service(
        "gateway", env={"REDIS_URL": own_redis.url, "REDIS_MAX_CONNECTIONS": "1"}
    )
    limit = 10
    tenant = create_tenant(admin, rate_limit_per_second=limit)
    url, headers = f"{gateway.url}/users", bearer(tenant["api_key"])
    assert httpx.get(url, headers=headers).status_code == 200  # cached: only the limiter left

    started = time.monotonic()
    with _stalls(own_redis, pause_ms=100, every=0.3):
        flood = asyncio.run(_flood(url, headers, count=300, concurrency=64))
    elapsed = time.monotonic() - started
    statuses = [r.status_code for r in flood]
    allowed = statuses.count(200)
    # Redis's budget and, for calls that found no free connection, this replica's own:
    # each allows a one-second burst plus the rate, so together at most twice that.
    assert allowed <= 2 * limit * (1 + elapsed) + 1, (allowed, elapsed)
    assert set(statuses) == {200, 429}
    assert _fallbacks(gateway, secrets, "redis_busy") > 0, "the pool was never exhausted"
    assert _fallbacks(gateway, secrets, "redis_down") == 0
    ready = httpx.get(f"{gateway.url}/readyz", timeout=5).json()
    assert ready["redis"] == "up", ready
    assert "redis is down" not in gateway.child.tail(400)


def test_with_redis_killed_each_replica_enforces_its_share_of_the_limit(
    own_redis: RedisServer,
    start_service: Callable[..., ServiceProcess],
    admin: httpx.Client,
    secrets: Secrets,
) -> None:
    gateway = start_service("gateway", env={"REDIS_URL": own_redis.url, "GATEWAY_REPLICAS": "2"})
    limit = 20
    tenant = create_tenant(admin, rate_limit_per_second=limit)
    url, headers = f"{gateway.url}/users", bearer(tenant["api_key"])
    assert httpx.get(url, headers=headers).status_code == 200

    own_redis.kill()
    started = time.monotonic()
    responses = asyncio.run(_flood(url, headers, count=80, concurrency=16))
    elapsed = time.monotonic() - started
    statuses = [r.status_code for r in responses]
    allowed = statuses.count(200)
    share = limit // 2
    # Without Redis this replica allows its share (limit / GATEWAY_REPLICAS): a one-second
    # burst of it plus its rate; fail-open would have let all 80 through.
    assert share - 1 <= allowed <= share * (1 + elapsed) + 1, (allowed, elapsed, statuses)
    assert set(statuses) == {200, 429}
    refused = next(r for r in responses if r.status_code == 429)
    assert refused.headers["ratelimit-limit"] == str(share)
    assert int(refused.headers["retry-after"]) >= 1
    assert _fallbacks(gateway, secrets, "redis_down") > 0
    assert "rate limits enforced per replica" in gateway.child.tail(400)
