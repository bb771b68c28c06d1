"""Cheap refusal of junk credentials: unknown-key lookups reach PostgreSQL at a bounded rate.

The same budget covers subdomains naming no known tenant (a valid key with a random
`Host` would otherwise cost a query each). A key or slug found in the in-process cache or
in Redis never meets this guard, so known tenants keep zero queries and no extra work.

A lookup that would query PostgreSQL takes a token first from its client address's bucket
(empty: 429 for that address alone), then from the replica's (empty: 503, the database is
protected whoever floods). When the key turns out to exist, both tokens are given back: a
client with many valid keys (a backend serving many tenants, a load test starting up)
spends nothing, while every unknown key costs its address and the replica one token.
Per replica, so PostgreSQL sees at most replicas x 2 x KEY_LOOKUPS_PER_SECOND such queries
in any second.
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
# An address may spend this many at once: room for a client that starts with many keys
# not yet cached (they are refunded once found), while its own rate stays the setting's.
CLIENT_BURST = 20
RETRY_AFTER = {"Retry-After": "1"}

A = TypeVar("A")


class TokenBucket:
    """`rate` tokens a second, holding at most `burst`."""

    __slots__ = ("rate", "burst", "tokens", "stamp")

    def __init__(self, rate: float, burst: float) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.stamp = time.monotonic()

    def take(self) -> bool:
        """Spend one token if there is one."""
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False

    def give_back(self) -> None:
        """Return a token that was spent on a lookup that found something."""
        self.tokens = min(self.burst, self.tokens + 1)


class KeyLookupGuard:
    """Decides whether an unknown key may cost a PostgreSQL query now."""

    def __init__(
        self, *, per_second: int, per_client_per_second: int, metrics: Metrics, enabled: bool
    ) -> None:
        # One second's worth of burst: in any second at most 2 x per_second get through.
        self._global = TokenBucket(per_second, per_second) if enabled and per_second else None
        self._per_client = per_client_per_second if enabled else 0
        self._clients: TTLCache[str, TokenBucket] = TTLCache(
            maxsize=MAX_CLIENTS, ttl=CLIENT_IDLE_SECONDS, timer=time.monotonic
        )
        self._metrics = metrics

    def check(self, client: str) -> None:
        """Spend this client's and the replica's tokens, or refuse (429 / 503)."""
        bucket = self._client_bucket(client)
        if bucket is not None and not bucket.take():
            self._metrics.key_lookups_refused.labels(scope="client").inc()
            raise GatewayError(429, "too many unrecognised API keys from this address", RETRY_AFTER)
        if self._global is not None and not self._global.take():
            if bucket is not None:
                bucket.give_back()
            self._metrics.key_lookups_refused.labels(scope="global").inc()
            raise GatewayError(503, "too many API key lookups at once; retry shortly", RETRY_AFTER)

    def refund(self, client: str) -> None:
        """The lookup found a tenant: give its tokens back."""
        bucket = self._client_bucket(client)
        if bucket is not None:
            bucket.give_back()
        if self._global is not None:
            self._global.give_back()

    def _client_bucket(self, client: str) -> TokenBucket | None:
        if self._per_client <= 0:
            return None
        bucket = self._clients.get(client)
        if bucket is None:
            bucket = self._clients[client] = TokenBucket(
                self._per_client, max(self._per_client, CLIENT_BURST)
            )
        return bucket

    def guard(
        self, lookup: Callable[..., Awaitable[int | None]], *, client: str
    ) -> Callable[[A], Awaitable[int | None]]:
        """`lookup` (a TenantDirectory method) with this client's check before any query."""

        async def guarded(value: A) -> int | None:
            charged = False

            def before_query() -> None:
                nonlocal charged
                self.check(client)
                charged = True

            found = await lookup(value, before_query=before_query)
            if charged and found is not None:
                self.refund(client)
            return found

        return guarded
