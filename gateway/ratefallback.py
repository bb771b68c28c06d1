"""The rate limit while Redis cannot be asked: each replica enforces its share in-process.

Without Redis no replica knows what the others let through, so each allows limit ÷
GATEWAY_REPLICAS (at least 1 per second): the tenant's total stays about its limit when the
load balancer spreads evenly, and never becomes "no limit". The same GCRA as the Lua script,
on this process's monotonic clock.
"""

from __future__ import annotations

import logging
import time

from cachetools import LRUCache

# One timestamp per tenant; the least recently limited go first when there are more.
MAX_TENANTS = 100_000
# While back-pressure lasts, one log line per this many seconds, not one per request.
LOG_EVERY_SECONDS = 10.0
log = logging.getLogger("gateway.ratelimit")


def replica_share(per_second: int, replicas: int) -> int:
    """This replica's part of a tenant's limit: limit ÷ replicas, never below 1."""
    return max(1, per_second // max(1, replicas))


class LocalLimiter:
    """GCRA per tenant in this process; answers like the Lua script (allowed, remaining, ...)."""

    def __init__(self, *, replicas: int) -> None:
        self.replicas = replicas
        self._tats: LRUCache[int, int] = LRUCache(maxsize=MAX_TENANTS)
        self._logged_at: dict[str, float] = {}

    def check(self, *, tenant_id: int, per_second: int) -> tuple[int, int, int, int, int]:
        """(limit, allowed, remaining, retry_after_us, reset_us) for this replica's share."""
        share = replica_share(per_second, self.replicas)
        interval = max(1, 1_000_000 // share)
        tolerance = interval * share  # burst = one second's worth, as in Redis
        now = time.monotonic_ns() // 1000
        tat = max(self._tats.get(tenant_id, now), now)
        new_tat = tat + interval
        wait = new_tat - tolerance - now
        if wait > 0:
            return share, 0, 0, wait, tat - now
        self._tats[tenant_id] = new_tat
        return share, 1, (tolerance - (new_tat - now)) // interval, 0, new_tat - now

    def note(self, reason: str) -> None:
        """Log (at most every LOG_EVERY_SECONDS per reason) that limits run per replica."""
        now = time.monotonic()
        if now - self._logged_at.get(reason, -LOG_EVERY_SECONDS) >= LOG_EVERY_SECONDS:
            self._logged_at[reason] = now
            log.warning(
                "rate limits enforced per replica (limit / %d) because %s",
                self.replicas,
                "Redis cannot be reached"
                if reason == "redis_down"
                else "every Redis connection is busy",
            )
