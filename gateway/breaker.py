"""Redis behind a circuit breaker: a dead Redis costs one fast failure, then nothing.

Calls in flight are bounded by a semaphore the size of the pool. Waiting too long for a
slot is local back-pressure (this process is busy), not Redis being down: it fails that
one call (RedisBusy) and never opens the breaker, so a burst cannot switch Redis off.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from redis import Redis as SyncRedis
from redis.asyncio import Redis
from redis.backoff import NoBackoff
from redis.exceptions import (
    AuthenticationError,
    MaxConnectionsError,
    NoPermissionError,
    RedisError,
)
from redis.retry import Retry

T = TypeVar("T")
log = logging.getLogger("gateway.redis")

# Every call must be cheap when Redis is gone: the request waits at most this long.
SOCKET_TIMEOUT_SECONDS = 0.25
# After a failure, requests skip Redis for this long before one of them tries again.
COOLDOWN_SECONDS = 1.0
# How long a call may wait for one of the pool's connections before it gives up.
POOL_WAIT_SECONDS = 0.05
DEFAULT_MAX_CONNECTIONS = 64


class RedisDown(Exception):
    """Redis is unreachable (or the breaker is open); the caller falls back."""


class RedisBusy(RedisDown):
    """Every pooled connection is in use: back-pressure here, Redis itself is fine."""


def make_client(
    url: str,
    *,
    socket_timeout: float | None = SOCKET_TIMEOUT_SECONDS,
    max_connections: int = DEFAULT_MAX_CONNECTIONS,
) -> Redis:
    """A pooled client that fails within a quarter second instead of retrying for seconds."""
    return Redis.from_url(
        url,
        socket_timeout=socket_timeout,
        socket_connect_timeout=SOCKET_TIMEOUT_SECONDS,
        retry=Retry(NoBackoff(), 0),
        max_connections=max_connections,
        decode_responses=True,
    )


def credentials_refused(url: str) -> str | None:
    """Why Redis refuses this URL's credentials; None when it accepts them or is unreachable.

    A wrong password is a bad setting (stop at start); Redis being down is not (degrade).
    """
    client = SyncRedis.from_url(
        url, socket_timeout=1, socket_connect_timeout=1, retry=Retry(NoBackoff(), 0)
    )
    try:
        client.ping()
    except (AuthenticationError, NoPermissionError) as exc:
        return str(exc)
    except (RedisError, OSError):
        return None
    finally:
        client.close()
    return None


class RedisLink:
    """A Redis client plus the breaker; logs once when Redis goes away and once when back."""

    def __init__(
        self,
        client: Redis,
        *,
        cooldown_seconds: float = COOLDOWN_SECONDS,
        max_in_flight: int = DEFAULT_MAX_CONNECTIONS,
        wait_seconds: float = POOL_WAIT_SECONDS,
    ) -> None:
        self.client = client
        self._cooldown = cooldown_seconds
        self._open_until = 0.0
        # Never more calls than pooled connections: the pool then never raises "Too many".
        self._slots = asyncio.Semaphore(max_in_flight)
        self._wait = wait_seconds
        self.up = True

    async def call(
        self, fn: Callable[[Redis], Awaitable[T]], *, wait_seconds: float | None = None
    ) -> T:
        """Run fn(client); RedisBusy when no slot frees in time, RedisDown when Redis fails.

        `wait_seconds` overrides the short wait for a slot, for calls that must not be lost.
        """
        if not self.up and time.monotonic() < self._open_until:
            raise RedisDown("redis is down")
        try:
            async with asyncio.timeout(self._wait if wait_seconds is None else wait_seconds):
                await self._slots.acquire()
        except TimeoutError:
            raise RedisBusy("no free redis connection") from None
        try:
            return await self._run(fn)
        finally:
            self._slots.release()

    async def _run(self, fn: Callable[[Redis], Awaitable[T]]) -> T:
        try:
            result = await fn(self.client)
        except MaxConnectionsError as exc:
            # The pool is shared with code outside the semaphore: still only back-pressure.
            raise RedisBusy(str(exc)) from exc
        except (RedisError, OSError, TimeoutError) as exc:
            self._open_until = time.monotonic() + self._cooldown
            if self.up:
                self.up = False
                log.warning(
                    "redis is down (%s): caching from PostgreSQL, per-replica rate limits", exc
                )
            raise RedisDown(str(exc)) from exc
        if not self.up:
            self.up = True
            log.warning("redis is back: caching and rate limits restored")
        return result
