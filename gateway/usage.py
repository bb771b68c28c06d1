"""Usage per tenant (SPEC §4 `usage`): exact request counts, errors, p95, database seconds,
rows and bytes, kept in Redis in one hash per tenant per minute.

Requests are counted in the process and added to Redis once a second (and at shutdown), so
a request costs a dict update, not a Redis round trip; every replica adds to the same
hashes, so the answer covers them all and survives restarts. A gateway killed with SIGKILL
loses at most its last second; while Redis is down the counts wait in memory (bounded).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from bisect import bisect_left
from collections.abc import Callable

from redis.asyncio import Redis

from gateway.breaker import RedisBusy, RedisDown, RedisLink
from services.tenancy.tenantmetrics import LATENCY_BUCKETS

log = logging.getLogger("gateway.usage")

BUCKET_SECONDS = 60
# Kept a day longer than the longest window, so a daily billing pull never misses one.
MAX_WINDOW_SECONDS = 86_400
TTL_SECONDS = MAX_WINDOW_SECONDS + 86_400
FLUSH_SECONDS = 1.0
# A flush may wait this long behind requests for a pooled connection before it retries.
FLUSH_WAIT_SECONDS = 0.5
# Pending (tenant, minute) rows kept while Redis is down; beyond that the oldest go.
MAX_PENDING = 100_000
# Fields: requests, errors (5xx), db seconds, rows, bytes, then one count per latency bucket.
_FIELDS = ("requests", "errors", "db_seconds", "rows", "bytes")
_HIST = tuple(f"le{i}" for i in range(len(LATENCY_BUCKETS) + 1))


def _key(tenant_id: int, minute: int) -> str:
    return f"tk:usage:{tenant_id}:{minute}"


class UsageBook:
    """What each tenant used, counted here and added to Redis every second."""

    def __init__(self, redis: RedisLink, *, clock: Callable[[], float] = time.time) -> None:
        self.redis = redis
        self._clock = clock
        self._pending: dict[tuple[int, int], list[float]] = {}
        self._held = False  # counts are waiting because a flush failed

    def record(
        self,
        tenant_id: int,
        *,
        status: int,
        seconds: float,
        db_seconds: float,
        rows: int,
        body_bytes: int,
    ) -> None:
        """Count one request the gateway answered for `tenant_id`."""
        key = (tenant_id, int(self._clock()) // BUCKET_SECONDS)
        row = self._pending.get(key)
        if row is None:
            if len(self._pending) >= MAX_PENDING:
                self._pending.pop(next(iter(self._pending)))
            row = self._pending[key] = [0.0] * (len(_FIELDS) + len(_HIST))
        row[0] += 1
        row[1] += status >= 500
        row[2] += db_seconds
        row[3] += rows
        row[4] += body_bytes
        row[len(_FIELDS) + bisect_left(LATENCY_BUCKETS, seconds)] += 1

    async def flush(self) -> None:
        """Add what was counted since the last flush to Redis (kept for later if it is down)."""
        if not self._pending:
            return
        batch, self._pending = self._pending, {}

        async def write(client: Redis) -> None:
            async with client.pipeline(transaction=False) as pipe:
                for (tenant_id, minute), row in batch.items():
                    key = _key(tenant_id, minute)
                    for name, value in zip(_FIELDS + _HIST, row, strict=True):
                        if not value:
                            continue
                        if name == "db_seconds":
                            pipe.hincrbyfloat(key, name, value)
                        else:
                            pipe.hincrby(key, name, int(value))
                    pipe.expire(key, TTL_SECONDS)
                await pipe.execute()

        try:
            # A background flush may queue behind requests for a connection; it has time.
            await self.redis.call(write, wait_seconds=FLUSH_WAIT_SECONDS)
        except RedisDown as exc:
            # A timeout may hide a write that landed; re-adding risks a double count, dropping
            # risks a lost one. Counts feed billing, so keep them and say it in the log.
            for key, row in batch.items():
                kept = self._pending.setdefault(key, [0.0] * len(row))
                for i, value in enumerate(row):
                    kept[i] += value
            if not self._held:  # once per outage; the breaker logs Redis's own state
                self._held = True
                state = "busy" if isinstance(exc, RedisBusy) else "unreachable"
                log.warning("usage: redis %s, counts wait in memory until it takes them", state)
        else:
            if self._held:
                self._held = False
                log.warning("usage: the counts that waited are in redis")

    async def run(self, stop: asyncio.Event) -> None:
        """Flush every second until `stop` is set, then once more.

        Stopped by an event, never cancelled: a flush cut off mid-write would lose its batch.
        """
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), FLUSH_SECONDS)
            await self.flush()

    async def read(self, tenant_id: int, *, window_seconds: int) -> dict[str, float | int | None]:
        """Totals over the last `window_seconds` (whole minutes), as the admin API answers."""
        await self.flush()
        keys = usage_keys(tenant_id, window_seconds=window_seconds, now=self._clock())

        async def fetch(client: Redis) -> list[dict[str, str]]:
            async with client.pipeline(transaction=False) as pipe:
                for key in keys:
                    pipe.hgetall(key)
                return await pipe.execute()  # type: ignore[no-any-return]

        return summarise(await self.redis.call(fetch), window_seconds=window_seconds)


def usage_keys(tenant_id: int, *, window_seconds: int, now: float) -> list[str]:
    """The minute hashes a window covers, the current (partial) minute included."""
    now_minute = int(now) // BUCKET_SECONDS
    first = now_minute - math.ceil(window_seconds / BUCKET_SECONDS) + 1
    return [_key(tenant_id, minute) for minute in range(first, now_minute + 1)]


def summarise(
    hashes: list[dict[str, str]], *, window_seconds: int
) -> dict[str, float | int | None]:
    """The usage answer from the window's minute hashes."""
    totals = dict.fromkeys(_FIELDS + _HIST, 0.0)
    for found in hashes:
        for name, value in found.items():
            if name in totals:
                totals[name] += float(value)
    return {
        "window_seconds": window_seconds,
        "requests": int(totals["requests"]),
        "errors": int(totals["errors"]),
        "p95_ms": p95_ms([int(totals[h]) for h in _HIST]),
        "db_seconds": round(totals["db_seconds"], 6),
        "rows": int(totals["rows"]),
        "bytes": int(totals["bytes"]),
    }


def p95_ms(counts: list[int]) -> float | None:
    """The 95th percentile from bucket counts, interpolated inside its bucket (as PromQL)."""
    total = sum(counts)
    if not total:
        return None
    rank, seen, lower = 0.95 * total, 0, 0.0
    for bound, count in zip((*LATENCY_BUCKETS, math.inf), counts, strict=True):
        if count and seen + count >= rank:
            if bound == math.inf:
                return lower * 1000
            return round((lower + (bound - lower) * (rank - seen) / count) * 1000, 3)
        seen += count
        lower = bound
    return lower * 1000
