"""Cheap refusal of junk credentials: unknown-key lookups reach PostgreSQL at a bounded rate.

The same budget covers subdomains naming no known tenant (a valid key with a random
`Host` would otherwise cost a query each). A key or slug found in the in-process cache or
in Redis never meets this guard, so known tenants
keep zero queries and no extra work. Only a lookup that would query PostgreSQL takes a
token: first from the calling client address's bucket (a flood from one address is
refused with 429 and leaves the rest of the budget to others), then from the replica's
global bucket (503 when even that is empty: the database is protected whoever floods).
Per replica, so PostgreSQL sees at most replicas x KEY_LOOKUPS_PER_SECOND such queries.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from cachetools import TTLCache

from gateway.errors import GatewayError
from gateway.metrics import Metrics

# Idle buckets are full buckets: forgetting one after a minute changes nothing.
MAX_CLIENTS = 10_000
CLIENT_IDLE_SECONDS = 60.0
RETRY_AFTER = {"Retry-After": "1"}

A = TypeVar("A")


class TokenBucket:
    """`rate` tokens a second, holding at most `rate` (one second's worth of burst)."""

    __slots__ = ("rate", "tokens", "stamp")

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.tokens = rate
        self.stamp = time.monotonic()

    def take(self) -> bool:
        """Spend one token if there is one."""
        now = time.monotonic()
        self.tokens = min(self.rate, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


class KeyLookupGuard:
    """Decides whether an unknown key may cost a PostgreSQL query now."""

    def __init__(
        self, *, per_second: int, per_client_per_second: int, metrics: Metrics, enabled: bool
    ) -> None:
        self._global = TokenBucket(per_second) if enabled and per_second > 0 else None
        self._per_client = per_client_per_second if enabled else 0
        self._clients: TTLCache[str, TokenBucket] = TTLCache(
            maxsize=MAX_CLIENTS, ttl=CLIENT_IDLE_SECONDS, timer=time.monotonic
        )
        self._metrics = metrics

    def check(self, client: str) -> None:
        """Spend this client's and the replica's tokens, or refuse (429 / 503)."""
        if self._per_client > 0:
            bucket = self._clients.get(client)
            if bucket is None:
                bucket = self._clients[client] = TokenBucket(self._per_client)
            if not bucket.take():
                self._metrics.key_lookups_refused.labels(scope="client").inc()
                raise GatewayError(
                    429, "too many unrecognised API keys from this address", RETRY_AFTER
                )
        if self._global is not None and not self._global.take():
            self._metrics.key_lookups_refused.labels(scope="global").inc()
            raise GatewayError(503, "too many API key lookups at once; retry shortly", RETRY_AFTER)

    def guard(
        self, lookup: Callable[..., Awaitable[int | None]], *, client: str
    ) -> Callable[[A], Awaitable[int | None]]:
        """`lookup` (a TenantDirectory method) with this client's check before any query."""

        async def guarded(value: A) -> int | None:
            return await lookup(value, before_query=lambda: self.check(client))

        return guarded
