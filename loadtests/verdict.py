"""What a run's figures mean: pass or fail, and the one-screen table (no Locust import here,
so the suite can test it without gevent monkey-patching the test process)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

FLOOD_SUFFIX = " (flood)"
_TENANT_PREFIX = re.compile(r"^\[(?P<label>[^\]]+)\] ")


@dataclass(frozen=True, slots=True)
class GroupFigures:
    """One group of requests (a tenant, all tenants, the others): counts and latencies."""

    requests: int
    failures: int
    rps: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    cross_tenant: int
    rate_limited: int

    @property
    def fail_ratio(self) -> float:
        return self.failures / self.requests if self.requests else 0.0


@dataclass(frozen=True, slots=True)
class Verdict:
    """The exit code of a run and why."""

    exit_code: int
    reasons: list[str]


def tenant_of(name: str) -> str | None:
    """'[tenant-03] GET /users/{id}' -> 'tenant-03'."""
    match = _TENANT_PREFIX.match(name)
    return match.group("label") if match else None


def is_flood(name: str) -> bool:
    """Requests of the noisy-neighbour flood, kept out of the verdict."""
    return name.endswith(FLOOD_SUFFIX)


def verdict(overall: GroupFigures, *, cross_tenant: int, p95_bound_ms: int) -> Verdict:
    """Exit 1 on any cross-tenant row, more than 1 % failures, or p95 over the bound."""
    reasons = []
    if cross_tenant:
        reasons.append(f"{cross_tenant} cross-tenant response(s): one tenant saw another's rows")
    if overall.fail_ratio > 0.01:
        reasons.append(f"failure ratio {overall.fail_ratio:.2%} is over 1 %")
    if overall.p95_ms > p95_bound_ms:
        reasons.append(f"p95 {overall.p95_ms:.0f} ms is over LOAD_P95_MS={p95_bound_ms}")
    if overall.requests == 0:
        reasons.append("no request was made")
    return Verdict(exit_code=1 if reasons else 0, reasons=reasons)


def histogram_percentile(histogram: Mapping[int, int], fraction: float) -> int:
    """The latency (ms) under which `fraction` of the requests finished, as Locust counts it."""
    total = sum(histogram.values())
    allowed_above = total - int(total * fraction)
    seen = 0
    for ms in sorted(histogram, reverse=True):
        seen += histogram[ms]
        if seen >= allowed_above:
            return ms
    return 0


def render(
    tenants: Mapping[str, GroupFigures], *, overall: GroupFigures, users: Mapping[str, int]
) -> str:
    """The one-screen per-tenant table."""
    head = f"{'tenant':<12}{'users':>6}{'reqs':>8}{'fail':>6}{'req/s':>8}"
    head += f"{'p50 ms':>8}{'p95 ms':>8}{'p99 ms':>8}{'x-tenant':>10}"
    lines = [head, "-" * len(head)]
    for label, f in tenants.items():
        lines.append(_row(label, users.get(label, 0), f))
    lines.append("-" * len(head))
    lines.append(_row("all", sum(users.values()), overall))
    return "\n".join(lines)


def _row(label: str, users: int, f: GroupFigures) -> str:
    return (
        f"{label:<12}{users:>6}{f.requests:>8}{f.failures:>6}{f.rps:>8.1f}"
        f"{f.p50_ms:>8.0f}{f.p95_ms:>8.0f}{f.p99_ms:>8.0f}{f.cross_tenant:>10}"
    )
