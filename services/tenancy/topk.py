"""The heaviest tenants by a decaying score, in bounded memory (like `citus_stat_tenants`).

Space-Saving over at most `capacity` candidates: a tenant not yet tracked takes the place of
the lightest one and inherits its score, so a heavy tenant arriving late still climbs, and
10,000 tenants cost no more memory than `capacity`. Scores halve every `half_life_seconds`,
so a tenant that stops sending falls out of the top K.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable

# Scores are kept in "inflated" units (weight x 2^(age / half-life)) so that decaying costs
# nothing per request; past this exponent every score is scaled back down at once.
_RENORMALISE_EXPONENT = 60.0


class TopTenants:
    """Which tenants are among the K heaviest right now."""

    def __init__(
        self,
        k: int,
        *,
        capacity: int | None = None,
        half_life_seconds: float = 60.0,
        refresh_seconds: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.k = k
        self.capacity = max(capacity or 4 * k, k, 1)
        self.half_life = half_life_seconds
        self.refresh_seconds = refresh_seconds
        self._clock = clock
        self._epoch = clock()
        self._scores: dict[str, float] = {}
        # (score when pushed, tenant): scores only grow, so a stale entry is a lower bound
        # and finding the lightest candidate costs O(log n) amortised instead of a scan.
        self._heap: list[tuple[float, str]] = []
        self._top: frozenset[str] = frozenset()
        self._next_refresh = self._epoch
        self.generation = 0  # bumped whenever the top set changes

    def record(self, tenant: str, weight: float = 1.0) -> None:
        """Count `weight` (a request) for `tenant`."""
        now = self._clock()
        exponent = (now - self._epoch) / self.half_life
        if exponent > _RENORMALISE_EXPONENT:
            self._renormalise(now, exponent)
            exponent = 0.0
        inflated = weight * 2.0**exponent
        scores = self._scores
        if tenant in scores:
            scores[tenant] += inflated
        elif len(scores) < self.capacity:
            scores[tenant] = inflated
            heapq.heappush(self._heap, (inflated, tenant))
        else:
            # The lightest candidate makes room; its score is an upper bound of what the
            # newcomer may have sent before (Space-Saving's guarantee).
            scores[tenant] = self._evict_lightest() + inflated
            heapq.heappush(self._heap, (scores[tenant], tenant))
        if now >= self._next_refresh:
            self.refresh(now)

    def _evict_lightest(self) -> float:
        heap, scores = self._heap, self._scores
        while True:
            pushed, tenant = heapq.heappop(heap)
            current = scores[tenant]
            if current == pushed:
                del scores[tenant]
                return current
            heapq.heappush(heap, (current, tenant))

    def refresh(self, now: float | None = None) -> frozenset[str]:
        """Recompute the top K from the candidates' scores."""
        now = self._clock() if now is None else now
        self._next_refresh = now + self.refresh_seconds
        top = frozenset(heapq.nlargest(self.k, self._scores, key=self._scores.__getitem__))
        if top != self._top:
            self._top = top
            self.generation += 1
        return top

    def refresh_if_due(self) -> None:
        """Recompute the top K if its refresh interval has passed (a scrape calls this)."""
        now = self._clock()
        if now >= self._next_refresh:
            self.refresh(now)

    @property
    def top(self) -> frozenset[str]:
        """The tenants that get their own label."""
        return self._top

    def score(self, tenant: str) -> float:
        """The decayed score of `tenant` now (0 when not tracked)."""
        inflated = self._scores.get(tenant, 0.0)
        return inflated / 2.0 ** ((self._clock() - self._epoch) / self.half_life)

    def _renormalise(self, now: float, exponent: float) -> None:
        scale = 2.0**-exponent
        self._scores = {t: s * scale for t, s in self._scores.items()}
        self._heap = [(s, t) for t, s in self._scores.items()]
        heapq.heapify(self._heap)
        self._epoch = now


def label_for(top: TopTenants | None, tenant: str | None) -> str:
    """The `tenant` label value: the id for a top-K tenant, else "other"."""
    if top is None or tenant is None or tenant not in top.top:
        return "other"
    return tenant
