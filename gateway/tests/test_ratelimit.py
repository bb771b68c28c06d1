"""GCRA against a real Redis: burst allowance, refill, headers, and 0 = unlimited."""

from __future__ import annotations

import asyncio
import math
import time
import uuid

import pytest

from gateway.breaker import RedisLink, make_client
from gateway.errors import GatewayError
from gateway.metrics import Metrics
from gateway.ratelimit import RateLimiter
from kit.servers import RedisServer


def limiter_on(redis_url: str, default: int = 100) -> RateLimiter:
    return RateLimiter(
        redis=RedisLink(make_client(redis_url)), metrics=Metrics(), default_per_second=default
    )


def tenant() -> int:
    return uuid.uuid4().int % 10**12 + 10**12


async def burst(redis_url: str, *, tenant_id: int, per_second: int, count: int) -> list[object]:
    limiter = limiter_on(redis_url)
    try:
        return [
            await limiter.check(tenant_id=tenant_id, per_second=per_second) for _ in range(count)
        ]
    finally:
        await limiter._redis.client.aclose()


def test_instant_burst_gets_exactly_the_burst_allowance(redis_server: RedisServer) -> None:
    started = time.monotonic()
    decisions = asyncio.run(burst(redis_server.url, tenant_id=tenant(), per_second=10, count=30))
    lasted = time.monotonic() - started
    allowed = [d for d in decisions if d.allowed]  # type: ignore[attr-defined]
    # The burst (= limit) passes, and refill adds one per 100 ms the 30 calls took (a few ms
    # on a quiet machine, so 10 or 11), never more.
    assert 10 <= len(allowed) <= 10 + math.floor(lasted * 10) + 1, lasted
    assert all(d.allowed for d in decisions[:10])  # type: ignore[attr-defined]
    assert decisions[0].remaining == 9  # type: ignore[attr-defined]
    if lasted < 0.1:  # no refill in between: the count down is exact
        assert [d.remaining for d in decisions[:10]] == list(range(9, -1, -1))  # type: ignore[attr-defined]


def test_refused_request_says_when_to_retry_in_whole_seconds(redis_server: RedisServer) -> None:
    decisions = asyncio.run(burst(redis_server.url, tenant_id=tenant(), per_second=2, count=5))
    refused = [d for d in decisions if not d.allowed]  # type: ignore[attr-defined]
    assert refused
    headers = refused[0].headers()  # type: ignore[attr-defined]
    assert int(headers["Retry-After"]) >= 1
    assert headers["RateLimit-Limit"] == "2"
    assert headers["RateLimit-Remaining"] == "0"
    assert int(headers["RateLimit-Reset"]) >= 1


def test_tenants_do_not_share_a_budget(redis_server: RedisServer) -> None:
    a, b = tenant(), tenant()
    asyncio.run(burst(redis_server.url, tenant_id=a, per_second=3, count=10))
    fresh = asyncio.run(burst(redis_server.url, tenant_id=b, per_second=3, count=1))
    assert fresh[0].allowed  # type: ignore[attr-defined]


def test_zero_means_unlimited(redis_server: RedisServer) -> None:
    decisions = asyncio.run(burst(redis_server.url, tenant_id=tenant(), per_second=0, count=3))
    assert decisions == [None, None, None]


def test_over_the_limit_raises_429_with_retry_after(redis_server: RedisServer) -> None:
    async def run() -> GatewayError:
        limiter = limiter_on(redis_server.url)
        tenant_id = tenant()
        try:
            await limiter.enforce(tenant_id=tenant_id, per_second=1)
            with pytest.raises(GatewayError) as info:
                await limiter.enforce(tenant_id=tenant_id, per_second=1)
            return info.value
        finally:
            await limiter._redis.client.aclose()

    error = asyncio.run(run())
    assert error.status == 429
    assert int(error.headers["Retry-After"]) >= 1
