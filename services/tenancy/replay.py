"""Replay protection: a service accepts each gateway nonce once, across all its replicas.

Nonces live in Redis as `tk:nonce:<nonce>` (`SET NX EX`: one round trip on a pooled
connection) for as long as their timestamp is accepted. While Redis is unreachable, each
replica remembers the nonces it accepted in memory: an exact replay to the same replica is
still refused, a replay to another replica within the window is not. Deployments that want
no such gap set `REPLAY_STORE_FAIL_CLOSED=true` and get a fast 503 instead.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from services.tenancy.signing import NONCE_TTL_SECONDS

KEY_PREFIX = "tk:nonce:"
# A down Redis must cost a request milliseconds, not a connect timeout each time.
REDIS_TIMEOUT_SECONDS = 0.5
RETRY_AFTER_FAILURE_SECONDS = 1.0
MAX_CONNECTIONS = 64
# Memory bound of the fallback (~150 bytes an entry); when full it refuses rather than forget.
LOCAL_MAX_NONCES = 200_000


class ReplayStoreDown(Exception):
    """No store can say whether this nonce was seen (strict mode, or the fallback is full)."""


class LocalNonces:
    """Nonces accepted by this process, each forgotten once its timestamp is no longer valid."""

    def __init__(self, *, max_entries: int = LOCAL_MAX_NONCES) -> None:
        self._seen: OrderedDict[str, float] = OrderedDict()
        self._max = max_entries

    def __contains__(self, nonce: str) -> bool:
        return nonce in self._seen

    def first_use(self, nonce: str, *, now: float | None = None) -> bool:
        """True the first time `nonce` is offered within its window."""
        current = time.monotonic() if now is None else now
        # Entries are appended in expiry order, so expired ones sit at the front.
        while self._seen and next(iter(self._seen.values())) <= current:
            self._seen.popitem(last=False)
        if nonce in self._seen:
            return False
        if len(self._seen) >= self._max:
            raise ReplayStoreDown("local nonce store is full")
        self._seen[nonce] = current + NONCE_TTL_SECONDS
        return True


class NonceStore:
    """The shared store (Redis) with the documented per-replica fallback."""

    def __init__(
        self, redis_url: str | None, *, fail_closed: bool = False, log: logging.Logger
    ) -> None:
        # A blocking pool: a burst waits briefly for a connection instead of failing with
        # "Too many connections", which would look like Redis down and switch to the fallback.
        self._redis = (
            aioredis.Redis(
                connection_pool=aioredis.BlockingConnectionPool.from_url(
                    redis_url,
                    max_connections=MAX_CONNECTIONS,
                    timeout=REDIS_TIMEOUT_SECONDS,
                    socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
                    socket_timeout=REDIS_TIMEOUT_SECONDS,
                )
            )
            if redis_url
            else None
        )
        self.fail_closed = fail_closed
        self._local = LocalNonces()
        self._retry_at = 0.0
        self._log = log

    @property
    def state(self) -> str:
        """`shared` (Redis answers), `local` (fallback in force) or `local-only` (no Redis)."""
        if self._redis is None:
            return "local-only"
        return "shared" if time.monotonic() >= self._retry_at else "local"

    async def first_use(self, nonce: str) -> bool:
        """True the first time this nonce is seen; ReplayStoreDown when nobody can tell."""
        # Accepted during an outage, remembered only here: Redis back must not forget it.
        if nonce in self._local:
            return False
        if self._redis is not None and time.monotonic() >= self._retry_at:
            try:
                return bool(
                    await self._redis.set(KEY_PREFIX + nonce, b"1", nx=True, ex=NONCE_TTL_SECONDS)
                )
            except (RedisError, OSError) as exc:
                self._retry_at = time.monotonic() + RETRY_AFTER_FAILURE_SECONDS
                self._log.warning("replay store unreachable, per-replica fallback: %s", exc)
        if self._redis is not None and self.fail_closed:
            raise ReplayStoreDown("replay store unreachable")
        return self._local.first_use(nonce)

    async def ping(self) -> bool:
        """Whether the shared store answers (readiness); True when there is none to ask."""
        if self._redis is None:
            return True
        try:
            await self._redis.ping()
        except (RedisError, OSError):
            return False
        self._retry_at = 0.0
        return True

    async def aclose(self) -> None:
        """Close the pool."""
        if self._redis is not None:
            await self._redis.aclose(close_connection_pool=True)
