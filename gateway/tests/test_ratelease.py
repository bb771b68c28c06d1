"""Rate-limit leases against a real Redis: a busy tenant costs one call per lease, replicas
together never pass the shared budget, and unspent tokens go back to it."""

from __future__ import annotations

import asyncio
import time
import uuid

import redis

from gateway.breaker import RedisLink, make_client
from gateway.metrics import Metrics
from gateway.ratelease import LEASE_TTL_SECONDS
from gateway.ratelimit import RateLimiter, rate_limit_key
from kit.servers import RedisServer


def replica(redis_url: str, lease_max: int = 64) -> RateLimiter:
    return RateLimiter(
        redis=RedisLink(make_client(redis_url)),
        metrics=Metrics(),
        default_per_second=100,
        lease_max=lease_max,
    )


def tenant() -> int:
    return uuid.uuid4().int % 10**12 + 10**12


def test_a_busy_tenant_costs_one_redis_call_per_lease(redis_server: RedisServer) -> None:
    async def run() -> tuple[int, int]:
        limiter = replica(redis_server.url)
        calls = 0
        ask = limiter._ask

        async def counted(*args: int) -> tuple[int, int, int, int]:
            nonlocal calls
            calls += 1
            return await ask(*args)

        limiter._leases._ask = counted
        tenant_id = tenant()
        try:
            # 32 at a time, as a busy tenant's requests arrive: they share each lease's call.
            decisions = []
            for _ in range(10):
                decisions += await asyncio.gather(
                    *(limiter.check(tenant_id=tenant_id, per_second=10_000) for _ in range(32))
                )
        finally:
            await limiter._redis.client.aclose()
        return sum(bool(d and d.allowed) for d in decisions), calls

    allowed, calls = asyncio.run(run())
    assert allowed == 320
    # 10,000/s: leases of 64 (10 ms of the rate would be 100); 320 requests, 5 leases.
    assert calls <= 8, calls


def test_replicas_with_leases_never_pass_the_shared_budget(redis_server: RedisServer) -> None:
    per_second = 1000  # leases of 10

    async def run() -> tuple[int, float]:
        replicas = [replica(redis_server.url), replica(redis_server.url)]
        tenant_id = tenant()
        started = time.monotonic()
        try:
            decisions = []
            for _ in range(60):
                decisions += await asyncio.gather(
                    *(
                        replicas[i % 2].check(tenant_id=tenant_id, per_second=per_second)
                        for i in range(50)
                    )
                )
        finally:
            for each in replicas:
                await each._redis.client.aclose()
        return sum(bool(d and d.allowed) for d in decisions), time.monotonic() - started

    allowed, lasted = asyncio.run(run())
    # The burst (a second's worth) plus what refilled while 3,000 requests were decided;
    # without leases the bound is the same.
    assert allowed <= per_second * (1 + lasted) + 1, (allowed, lasted)
    # Held-but-unspent tokens (at most a lease per replica) are all it may fall short by.
    assert allowed >= per_second - 2 * 10, (allowed, lasted)


def test_unspent_tokens_go_back_to_the_shared_budget(redis_server: RedisServer) -> None:
    per_second, interval_us = 1000, 1000  # leases of 10
    tenant_id = tenant()
    direct = redis.Redis.from_url(redis_server.url)
    seconds, micros = direct.time()
    # The tenant is busy: its theoretical arrival time is 900 ms ahead (100 tokens left).
    base = seconds * 1_000_000 + micros + 900_000
    direct.set(rate_limit_key(tenant_id), base, px=5000)

    async def run() -> None:
        limiter = replica(redis_server.url)
        try:
            first = await limiter.check(tenant_id=tenant_id, per_second=per_second)
            assert first is not None and first.allowed  # a lease of 10, one spent
            await asyncio.sleep(LEASE_TTL_SECONDS + 0.02)
            second = await limiter.check(tenant_id=tenant_id, per_second=per_second)
            assert second is not None and second.allowed  # 9 back, a new lease of 10
        finally:
            await limiter._redis.client.aclose()

    asyncio.run(run())
    tat = int(direct.get(rate_limit_key(tenant_id)) or 0)
    direct.close()
    # Two leases of 10 taken, 9 handed back: 11 intervals past where it stood, not 20.
    assert tat - base == 11 * interval_us
