"""Leases: a replica takes several of a busy tenant's rate-limit tokens in one Redis call.

One `EVALSHA` per request was, with its socket work, the largest single cost of the
gateway's own CPU (issue 10's profile), and one more round trip on every request's path.
For a tenant whose limit is high, a replica now reserves up to `size` tokens in one call
(at most LEASE_SECONDS of the tenant's rate) and admits from them in-process. The tokens
come out of the same shared GCRA, so all replicas together still admit no more than the
limit and its burst: what a lease changes is when, by at most LEASE_TTL_SECONDS, a reserved
token is spent. Tokens not spent by then are handed back with the tenant's next call.
Limits under 2 / LEASE_SECONDS per second, and RATE_LIMIT_LEASE_MAX=1, keep one call per
request, exactly as before.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from cachetools import LRUCache

# A lease holds at most this much of the tenant's rate, and is spent within LEASE_TTL or
# handed back: with limits in the thousands, a few milliseconds' worth per call.
LEASE_SECONDS = 0.01
LEASE_TTL_SECONDS = 0.05
MAX_TENANTS = 100_000

# What the GCRA script answers: (granted, remaining, retry_after_us, reset_us).
Grant = tuple[int, int, int, int]
# Asks Redis for `want` tokens at `per_second`, handing `back` unspent ones back.
Ask = Callable[[int, int, int, int], Awaitable[Grant]]


def lease_size(per_second: int, most: int) -> int:
    """How many tokens one call reserves: LEASE_SECONDS of the rate, 1..most."""
    return max(1, min(most, int(per_second * LEASE_SECONDS)))


@dataclass(slots=True)
class Lease:
    """Tokens of one tenant held by this replica, and what Redis said when it granted them."""

    per_second: int
    tokens: int
    remaining: int  # the shared budget left when granted, beyond these tokens
    reset_us: int
    granted_at: float  # monotonic seconds

    def fresh(self, now: float, per_second: int) -> bool:
        return self.per_second == per_second and now - self.granted_at < LEASE_TTL_SECONDS


class Leases:
    """Per tenant: the lease in hand, and one refill call at a time."""

    def __init__(self, ask: Ask) -> None:
        self._ask = ask
        self._held: LRUCache[int, Lease] = LRUCache(maxsize=MAX_TENANTS)
        self._refills: dict[int, asyncio.Future[None]] = {}

    async def take(self, tenant_id: int, *, per_second: int, size: int) -> Grant:
        """One token: (1, remaining, 0, reset_us) if allowed, else (0, 0, retry_us, reset_us)."""
        while True:
            taken = self._spend(tenant_id, per_second)
            if taken is not None:
                return taken
            pending = self._refills.get(tenant_id)
            if pending is not None:
                # Another request of this tenant is asking already: its grant serves us too.
                await asyncio.shield(pending)
                continue
            done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._refills[tenant_id] = done
            try:
                grant = await self._refill(tenant_id, per_second=per_second, size=size)
            finally:
                del self._refills[tenant_id]
                done.set_result(None)
            if not grant[0]:
                return grant

    def _spend(self, tenant_id: int, per_second: int) -> Grant | None:
        lease = self._held.get(tenant_id)
        if lease is None or lease.tokens <= 0:
            return None
        now = time.monotonic()
        if not lease.fresh(now, per_second):
            return None
        lease.tokens -= 1
        elapsed_us = int((now - lease.granted_at) * 1_000_000)
        return 1, lease.remaining + lease.tokens, 0, max(0, lease.reset_us - elapsed_us)

    async def _refill(self, tenant_id: int, *, per_second: int, size: int) -> Grant:
        old = self._held.pop(tenant_id, None)
        # Unspent tokens of a lease granted at the same rate go back to the shared budget.
        back = old.tokens if old is not None and old.per_second == per_second else 0
        try:
            granted, remaining, retry_us, reset_us = await self._ask(
                tenant_id, per_second, size, back
            )
        except BaseException:
            if old is not None:
                self._held[tenant_id] = old  # nothing was handed back
            raise
        if granted:
            self._held[tenant_id] = Lease(
                per_second=per_second,
                tokens=granted,
                remaining=remaining,
                reset_us=reset_us,
                granted_at=time.monotonic(),
            )
        return granted, remaining, retry_us, reset_us
