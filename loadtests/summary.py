"""Per-tenant figures from Locust's statistics, the pass/fail verdict and the summary screen."""

from __future__ import annotations

import re
from collections.abc import Set as AbstractSet
from dataclasses import asdict, dataclass

from locust.stats import RequestStats, StatsEntry

from loadtests.isolation import CROSS_TENANT

FLOOD_SUFFIX = " (flood)"
_TENANT_PREFIX = re.compile(r"^\[(?P<label>[^\]]+)\] ")


@dataclass(frozen=True, slots=True)
class GroupFigures:
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
    exit_code: int
    reasons: list[str]


def tenant_of(name: str) -> str | None:
    """'[tenant-03] GET /users/{id}' -> 'tenant-03'."""
    match = _TENANT_PREFIX.match(name)
    return match.group("label") if match else None


def is_flood(name: str) -> bool:
    """Requests of the noisy-neighbour flood, kept out of the verdict."""
    return name.endswith(FLOOD_SUFFIX)


def _merged(stats: RequestStats, names: set[str]) -> StatsEntry:
    merged = StatsEntry(stats, "group", "")
    for entry in stats.entries.values():
        if entry.name in names:
            merged.extend(entry)
    return merged


def _figures(stats: RequestStats, names: set[str]) -> GroupFigures:
    merged = _merged(stats, names)
    errors = [e for e in stats.errors.values() if e.name in names]
    return GroupFigures(
        requests=merged.num_requests,
        failures=merged.num_failures,
        rps=round(merged.total_rps, 1),
        p50_ms=merged.get_response_time_percentile(0.50),
        p95_ms=merged.get_response_time_percentile(0.95),
        p99_ms=merged.get_response_time_percentile(0.99),
        cross_tenant=sum(e.occurrences for e in errors if CROSS_TENANT in str(e.error)),
        rate_limited=sum(e.occurrences for e in errors if "429" in str(e.error)),
    )


def per_tenant(stats: RequestStats, *, flood: bool = False) -> dict[str, GroupFigures]:
    """Figures per tenant label, from the requests of normal users (or of the flood)."""
    labels: dict[str, set[str]] = {}
    for entry in stats.entries.values():
        label = tenant_of(entry.name)
        if label is not None and is_flood(entry.name) == flood:
            labels.setdefault(label, set()).add(entry.name)
    return {label: _figures(stats, names) for label, names in sorted(labels.items())}


def _measured_names(stats: RequestStats, exclude: AbstractSet[str]) -> set[str]:
    return {
        e.name
        for e in stats.entries.values()
        if not is_flood(e.name) and tenant_of(e.name) not in exclude
    }


def measured(stats: RequestStats, *, exclude: AbstractSet[str] = frozenset()) -> GroupFigures:
    """All normal users' requests together, minus the tenants in `exclude`."""
    return _figures(stats, _measured_names(stats, exclude))


def response_times(
    stats: RequestStats, *, exclude: AbstractSet[str] = frozenset()
) -> dict[int, int]:
    """The latency histogram (ms -> count) of measured(): runs can be merged exactly."""
    return dict(_merged(stats, _measured_names(stats, exclude)).response_times)


def all_cross_tenant(stats: RequestStats) -> int:
    """Every cross-tenant failure, flood included."""
    return sum(e.occurrences for e in stats.errors.values() if CROSS_TENANT in str(e.error))


def verdict(
    stats: RequestStats, *, p95_bound_ms: int, exclude: AbstractSet[str] = frozenset()
) -> Verdict:
    """Exit 1 on any cross-tenant row, more than 1 % failures, or p95 over the bound."""
    overall = measured(stats, exclude=exclude)
    reasons = []
    leaks = all_cross_tenant(stats)
    if leaks:
        reasons.append(f"{leaks} cross-tenant response(s): one tenant saw another's rows")
    if overall.fail_ratio > 0.01:
        reasons.append(f"failure ratio {overall.fail_ratio:.2%} is over 1 %")
    if overall.p95_ms > p95_bound_ms:
        reasons.append(f"p95 {overall.p95_ms:.0f} ms is over LOAD_P95_MS={p95_bound_ms}")
    if overall.requests == 0:
        reasons.append("no request was made")
    return Verdict(exit_code=1 if reasons else 0, reasons=reasons)


def render(
    tenants: dict[str, GroupFigures], *, overall: GroupFigures, users: dict[str, int]
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


def as_json(figures: dict[str, GroupFigures]) -> dict[str, dict[str, float]]:
    """Figures as plain JSON, for the noisy-neighbour comparison between runs."""
    return {label: asdict(f) for label, f in figures.items()}
