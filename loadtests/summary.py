"""Per-tenant figures from Locust's statistics (this module imports Locust; verdict.py not)."""

from __future__ import annotations

from collections.abc import Set as AbstractSet
from dataclasses import asdict

from locust.stats import RequestStats, StatsEntry

from loadtests.isolation import CROSS_TENANT
from loadtests.verdict import GroupFigures, is_flood, tenant_of


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


def as_json(figures: dict[str, GroupFigures]) -> dict[str, dict[str, float]]:
    """Figures as plain JSON, for the noisy-neighbour comparison between runs."""
    return {label: asdict(f) for label, f in figures.items()}
