"""Per-tenant Prometheus series, bounded: a `tenant` label for the top K tenants, "other" for
the rest (SPEC §10). Shared by the gateway and every service, so a new service gets them.

prometheus-client's own Counter/Histogram cannot merge a series into another, so these are
plain sums exposed through a custom collector: when a tenant leaves the top K its series
are folded into `tenant="other"` (nothing is lost, and totals stay monotonic).
"""

from __future__ import annotations

import threading
import time
from bisect import bisect_left
from collections.abc import Callable, Iterator

from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.tenancy.topk import TopTenants

OTHER = "other"
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_INF = float("inf")


class TenantSeries:
    """Sums keyed by (labels..., tenant); departed tenants fold into "other"."""

    def __init__(self, top: TopTenants | None, *, width: int) -> None:
        self.top = top
        self.width = width
        self._values: dict[tuple[str, ...], list[float]] = {}
        self._generation = -1
        self._lock = threading.Lock()  # database events arrive from worker threads

    def label(self, tenant: str | None) -> str:
        """The tenant's label now: its id while in the top K, else "other"."""
        top = self.top
        if top is None or tenant is None:
            return OTHER
        if top.generation != self._generation:
            self._fold_departed()
        return tenant if tenant in top.top else OTHER

    def add(self, key: tuple[str, ...], index: int, amount: float) -> list[float]:
        """Add `amount` to field `index` of the series `key`; returns its fields."""
        with self._lock:
            row = self._values.get(key)
            if row is None:
                row = self._values[key] = [0.0] * self.width
            row[index] += amount
            return row

    def snapshot(self) -> list[tuple[tuple[str, ...], list[float]]]:
        """A copy of every series, for a scrape."""
        if self.top is not None:
            self.top.refresh_if_due()
        if self.top is not None and self.top.generation != self._generation:
            self._fold_departed()
        with self._lock:
            return [(k, list(v)) for k, v in self._values.items()]

    def _fold_departed(self) -> None:
        assert self.top is not None
        with self._lock:
            self._generation = self.top.generation
            top = self.top.top
            for key in [k for k in self._values if k[-1] != OTHER and k[-1] not in top]:
                row = self._values.pop(key)
                target = self._values.setdefault((*key[:-1], OTHER), [0.0] * self.width)
                for i, value in enumerate(row):
                    target[i] += value


class RequestStats(Collector):
    """Requests and their latency by route template, status class and tenant."""

    def __init__(self, prefix: str, top: TopTenants | None) -> None:
        self.prefix = prefix
        self.top = top
        # Fields: count, sum of seconds, then one (non-cumulative) count per bucket and +Inf.
        self.series = TenantSeries(top, width=2 + len(LATENCY_BUCKETS) + 1)

    def observe(self, *, route: str, status: int, tenant: str | None, seconds: float) -> None:
        """Count one answered request."""
        if tenant is not None and self.top is not None:
            self.top.record(tenant)
        key = (route, f"{status // 100}xx", self.series.label(tenant))
        row = self.series.add(key, 0, 1)
        row[1] += seconds
        row[2 + bisect_left(LATENCY_BUCKETS, seconds)] += 1

    def collect(self) -> Iterator[CounterMetricFamily | HistogramMetricFamily]:
        """The exposition (prometheus-client calls this on every scrape)."""
        labels = ["route", "status_class", "tenant"]
        requests = CounterMetricFamily(
            f"{self.prefix}_http_requests",
            "Requests answered (top-K tenants, rest 'other')",
            labels=labels,
        )
        latency = HistogramMetricFamily(
            f"{self.prefix}_http_request_duration_seconds",
            "Time to answer, first byte to last",
            labels=labels,
        )
        for key, row in self.series.snapshot():
            requests.add_metric(list(key), row[0])
            cumulative, buckets = 0.0, []
            for bound, count in zip((*LATENCY_BUCKETS, _INF), row[2:], strict=True):
                cumulative += count
                buckets.append(("+Inf" if bound == _INF else repr(bound), cumulative))
            latency.add_metric(list(key), buckets, row[1])
        yield requests
        yield latency


# (scope) -> value: how an app names a request's route template and tenant.
ScopeReader = Callable[[Scope], str | None]


def route_template(scope: Scope) -> str:
    """The matched route's template (`/users/{user_id}`), or "unmatched"."""
    route = scope.get("route")
    return getattr(route, "path", None) or "unmatched"


# (scope, status, seconds, body bytes): what an app does with a finished request besides
# counting it (the gateway's usage book).
AfterRequest = Callable[[Scope, int, float, int], None]


class MeasureRequests:
    """ASGI middleware: time every HTTP request and count it in `stats`."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        stats: RequestStats,
        route_of: ScopeReader = route_template,
        tenant_of: ScopeReader,
        then: AfterRequest | None = None,
    ) -> None:
        self.app = app
        self.stats = stats
        self.route_of = route_of
        self.tenant_of = tenant_of
        self.then = then

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # an exception before any answer is what the client sees as a 500
        sent = 0

        async def noting_send(message: Message) -> None:
            nonlocal status, sent
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body":
                sent += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, noting_send)
        finally:
            seconds = time.perf_counter() - started
            self.stats.observe(
                route=self.route_of(scope) or "unmatched",
                status=status,
                tenant=self.tenant_of(scope),
                seconds=seconds,
            )
            if self.then is not None:
                self.then(scope, status, seconds, sent)
