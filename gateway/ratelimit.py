"""Per-tenant rate limits: GCRA in Redis, shared by every replica; one EVALSHA round trip per
request, or per lease of several tokens for a busy tenant (gateway/ratelease.py)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from gateway.breaker import RedisBusy, RedisDown, RedisLink
from gateway.errors import GatewayError
from gateway.metrics import Metrics
from gateway.ratefallback import LocalLimiter
from gateway.ratelease import Grant, Leases, lease_size

# GCRA keeps one number per tenant, the "theoretical arrival time" (TAT). A request is
# allowed when TAT - now <= tolerance; each allowed one pushes TAT by one interval. Redis's
# own clock is used so that replicas with drifting clocks share one timeline; microseconds
# since the epoch (~2^51) are still exact in Lua's doubles. ARGV[3] asks for that many
# tokens at once (as many as fit are granted, at least one or none); ARGV[4] hands back
# tokens a replica reserved and did not spend. With 1 and 0 it is the plain GCRA.
GCRA_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tolerance = interval * tonumber(ARGV[2])
local want = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]) or now) - tonumber(ARGV[4]) * interval
if tat < now then tat = now end
local granted = math.min(want, math.floor((now + tolerance - tat) / interval))
if granted < 1 then
  if tonumber(ARGV[4]) > 0 then
    redis.call('SET', KEYS[1], string.format('%d', tat), 'PX', math.ceil((tat - now) / 1000) + 1000)
  end
  return {0, 0, tat + interval - tolerance - now, tat - now}
end
local new_tat = tat + granted * interval
local ttl_ms = math.ceil((new_tat - now) / 1000) + 1000
redis.call('SET', KEYS[1], string.format('%d', new_tat), 'PX', ttl_ms)
return {granted, math.floor((tolerance - (new_tat - now)) / interval), 0, new_tat - now}
"""


def rate_limit_key(tenant_id: int) -> str:
    return f"tk:rl:{tenant_id}"


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    limit: int
    remaining: int
    retry_after_us: int
    reset_us: int

    def headers(self) -> dict[str, str]:
        """RateLimit-* headers (IETF draft) and, when refused, Retry-After."""
        headers = {
            "RateLimit-Limit": str(self.limit),
            "RateLimit-Remaining": str(max(0, self.remaining)),
            "RateLimit-Reset": str(max(0, math.ceil(self.reset_us / 1_000_000))),
        }
        if not self.allowed:
            # Whole seconds, and never 0: "retry after 0 s" invites a hot loop.
            headers["Retry-After"] = str(max(1, math.ceil(self.retry_after_us / 1_000_000)))
        return headers


class RateLimiter:
    """Checks and counts one request against its tenant's limit."""

    def __init__(
        self,
        *,
        redis: RedisLink,
        metrics: Metrics,
        default_per_second: int,
        replicas: int = 1,
        lease_max: int = 1,
    ) -> None:
        self._redis = redis
        self._metrics = metrics
        self._default = default_per_second
        self._script = redis.client.register_script(GCRA_SCRIPT)
        self._fallback = LocalLimiter(replicas=replicas)
        self._lease_max = lease_max
        self._leases = Leases(self._ask)

    async def _ask(self, tenant_id: int, per_second: int, want: int, back: int) -> Grant:
        interval_us = max(1, 1_000_000 // per_second)
        # Burst allowance = one second's worth: a client may send a second's quota at once,
        # so in any 1 s at most 2x the limit passes, and on average exactly the limit.
        burst = per_second
        granted, remaining, retry_us, reset_us = await self._redis.call(
            lambda _r: self._script(
                keys=[rate_limit_key(tenant_id)], args=[interval_us, burst, want, back]
            )
        )
        return int(granted), int(remaining), int(retry_us), int(reset_us)

    def limit_for(self, tenant_limit: int | None) -> int:
        """The tenant's own limit when it has one, else the default; 0 means unlimited."""
        return self._default if tenant_limit is None else tenant_limit

    async def check(self, *, tenant_id: int, per_second: int) -> Decision | None:
        """The decision for this request; None when unlimited; per replica without Redis."""
        if per_second <= 0:
            return None
        limit = per_second
        size = lease_size(per_second, self._lease_max)
        try:
            if size > 1:
                allowed, remaining, retry_us, reset_us = await self._leases.take(
                    tenant_id, per_second=per_second, size=size
                )
            else:
                allowed, remaining, retry_us, reset_us = await self._ask(
                    tenant_id, per_second, 1, 0
                )
        except RedisDown as exc:
            # Busy or down, never "no limit": this replica enforces its share by itself.
            reason = "redis_busy" if isinstance(exc, RedisBusy) else "redis_down"
            self._metrics.ratelimit_fallback.labels(reason=reason).inc()
            self._fallback.note(reason)
            limit, allowed, remaining, retry_us, reset_us = self._fallback.check(
                tenant_id=tenant_id, per_second=per_second
            )
        return Decision(
            allowed=bool(allowed),
            limit=limit,
            remaining=int(remaining),
            retry_after_us=int(retry_us),
            reset_us=int(reset_us),
        )

    async def enforce(self, *, tenant_id: int, per_second: int) -> dict[str, str]:
        """Raise 429 when over the limit; otherwise the RateLimit-* headers to send back."""
        decision = await self.check(tenant_id=tenant_id, per_second=per_second)
        if decision is None:
            return {}
        if not decision.allowed:
            self._metrics.rate_limited.inc()
            raise GatewayError(429, "rate limit exceeded", decision.headers())
        return decision.headers()
