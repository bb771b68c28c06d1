"""The in-process level of the tenant cache: bounded, per-entry TTL, and invalidatable."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from cachetools import TLRUCache

MAX_ENTRIES = 50_000
# The in-process level is short-lived: it only has to absorb the steady state between
# Redis lookups, and its staleness adds to Redis's when an invalidation is missed.
LOCAL_TTL_CAP_SECONDS = 5.0
NEGATIVE_TTL_CAP_SECONDS = 5.0


@dataclass(frozen=True, slots=True)
class CacheTTLs:
    """How long each level keeps positive and negative entries, from TENANT_CACHE_TTL_SECONDS."""

    local: float
    redis: float
    negative_local: float
    negative_redis: float

    @classmethod
    def from_total(cls, total: float) -> CacheTTLs:
        """Split the total so that a direct SQL change is seen within `total` seconds.

        An entry can sit in Redis for its TTL and then in a process for the local TTL,
        so the two add up to the total rather than each being the total.
        """
        local = min(LOCAL_TTL_CAP_SECONDS, total / 2)
        negative = min(NEGATIVE_TTL_CAP_SECONDS, total)
        return cls(
            local=local,
            redis=total - local,
            negative_local=negative / 2,
            negative_redis=negative / 2,
        )


@dataclass(frozen=True, slots=True)
class _Entry:
    value: Any
    ttl: float


class LocalCache:
    """A bounded LRU whose entries expire after their own TTL (negative ones sooner)."""

    def __init__(self, *, max_entries: int = MAX_ENTRIES) -> None:
        self._data: TLRUCache[tuple[str, str], _Entry] = TLRUCache(
            maxsize=max_entries, ttu=lambda _k, entry, now: now + entry.ttl, timer=time.monotonic
        )
        # Bumped by every invalidation: a lookup that started before one must not store
        # what it read, or it could put back the very entry the invalidation removed.
        self.generation = 0

    def get(self, key: tuple[str, str]) -> tuple[bool, Any]:
        """(found, value); value None is a cached "does not exist"."""
        entry = self._data.get(key)
        return (False, None) if entry is None else (True, entry.value)

    def put(self, key: tuple[str, str], value: Any, *, ttl: float, generation: int) -> None:
        """Store unless an invalidation happened since `generation` was read."""
        if generation == self.generation and ttl > 0:
            self._data[key] = _Entry(value, ttl)

    def drop(self, key: tuple[str, str]) -> None:
        """Forget one entry."""
        self.generation += 1
        self._data.pop(key, None)

    def drop_where(self, kind: str, predicate: Any) -> None:
        """Forget every entry of this kind whose value matches."""
        self.generation += 1
        for key in [k for k, e in list(self._data.items()) if k[0] == kind and predicate(e.value)]:
            self._data.pop(key, None)

    def clear(self) -> None:
        """Forget everything (after missing invalidations while Redis was away)."""
        self.generation += 1
        self._data.clear()
