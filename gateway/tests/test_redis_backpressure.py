"""Local back-pressure on Redis is not Redis being down, and the fallback limit is a limit."""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio import Redis

from gateway.breaker import RedisBusy, RedisLink, make_client
from gateway.ratefallback import LocalLimiter, replica_share
from kit.servers import RedisServer


async def _hold(link: RedisLink, release: asyncio.Event) -> None:
    async def wait_inside(client: Redis) -> None:
        await client.ping()
        await release.wait()

    await link.call(wait_inside)


async def _exhaust(link: RedisLink) -> tuple[BaseException | None, bool]:
    release = asyncio.Event()
    holder = asyncio.create_task(_hold(link, release))
    await asyncio.sleep(0.05)
    error: BaseException | None = None
    try:
        await link.call(lambda r: r.ping())
    except RedisBusy as exc:
        error = exc
    up_while_busy = link.up
    release.set()
    await holder
    assert await link.call(lambda r: r.ping())
    await link.client.aclose()
    return error, up_while_busy


def test_a_full_pool_is_busy_not_down_and_never_opens_the_breaker(
    redis_server: RedisServer,
) -> None:
    link = RedisLink(make_client(redis_server.url, max_connections=1), max_in_flight=1)
    error, up = asyncio.run(_exhaust(link))
    assert isinstance(error, RedisBusy)
    assert up and link.up


async def _pool_taken(link: RedisLink) -> tuple[BaseException | None, bool]:
    pool = link.client.connection_pool
    taken = await pool.get_connection()
    error: BaseException | None = None
    try:
        await link.call(lambda r: r.ping())
    except RedisBusy as exc:
        error = exc
    up_while_busy = link.up
    await pool.release(taken)
    assert await link.call(lambda r: r.ping())
    await link.client.aclose()
    return error, up_while_busy


def test_too_many_connections_from_the_pool_itself_is_busy_too(redis_server: RedisServer) -> None:
    # A semaphore wider than the pool: redis-py raises MaxConnectionsError itself.
    link = RedisLink(make_client(redis_server.url, max_connections=1), max_in_flight=4)
    error, up = asyncio.run(_pool_taken(link))
    assert isinstance(error, RedisBusy)
    assert up and link.up


@pytest.mark.parametrize(("limit", "replicas", "share"), [(20, 2, 10), (5, 3, 1), (1, 4, 1)])
def test_each_replica_gets_its_share_of_the_limit(limit: int, replicas: int, share: int) -> None:
    assert replica_share(limit, replicas) == share


def test_the_fallback_limit_refuses_past_the_burst_of_its_share() -> None:
    limiter = LocalLimiter(replicas=2)
    results = [limiter.check(tenant_id=1, per_second=20) for _ in range(25)]
    allowed = [r for r in results if r[1]]
    assert len(allowed) == 10
    refused = results[-1]
    assert refused[0] == 10 and refused[1] == 0 and refused[3] > 0
    # Another tenant has a budget of its own.
    assert limiter.check(tenant_id=2, per_second=20)[1] == 1


async def _patient_call_behind_a_held_slot(link: RedisLink) -> bool:
    release = asyncio.Event()
    holder = asyncio.create_task(_hold(link, release))
    await asyncio.sleep(0.05)
    asyncio.get_running_loop().call_later(0.2, release.set)
    # An invalidation may wait for the slot (0.2 s here) where a limiter call would not.
    answer = await link.call(lambda r: r.ping(), wait_seconds=1.0)
    await holder
    await link.client.aclose()
    return bool(answer)


def test_a_call_that_must_not_be_lost_waits_for_a_busy_pool(redis_server: RedisServer) -> None:
    link = RedisLink(make_client(redis_server.url, max_connections=1), max_in_flight=1)
    assert asyncio.run(_patient_call_behind_a_held_slot(link))
    assert link.up
