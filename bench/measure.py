"""Measurements and their comparison: A/B rounds interleaved, medians, one ratio line each."""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Sample:
    """One timed run: a fixed number of operations at a fixed concurrency."""

    operations: int
    concurrency: int
    seconds: float
    latencies: list[float]  # seconds, one per operation

    @property
    def throughput(self) -> float:
        return self.operations / self.seconds if self.seconds else 0.0

    def percentile(self, fraction: float) -> float:
        """Nearest-rank percentile of the latencies, in milliseconds."""
        ordered = sorted(self.latencies)
        if not ordered:
            return 0.0
        rank = max(0, min(len(ordered) - 1, round(fraction * len(ordered) + 0.5) - 1))
        return ordered[rank] * 1000.0


@dataclass(frozen=True, slots=True)
class Figures:
    """The median, over rounds, of each figure of one side of a comparison."""

    label: str
    operations: int
    concurrency: int
    rounds: int
    throughput: float
    p50_ms: float
    p99_ms: float

    def describe(self, unit: str) -> str:
        """The inputs and figures of this side, on one line."""
        return (
            f"{self.label}: {self.operations} {unit} x {self.rounds} rounds, concurrency "
            f"{self.concurrency}, {self.throughput:,.0f} {unit}/s, p50 {self.p50_ms:.2f} ms, "
            f"p99 {self.p99_ms:.2f} ms"
        )


def figures(label: str, samples: list[Sample]) -> Figures:
    """Medians over rounds: one slow round (another engineer's build) moves them little."""
    return Figures(
        label=label,
        operations=samples[0].operations,
        concurrency=samples[0].concurrency,
        rounds=len(samples),
        throughput=statistics.median(s.throughput for s in samples),
        p50_ms=statistics.median(s.percentile(0.50) for s in samples),
        p99_ms=statistics.median(s.percentile(0.99) for s in samples),
    )


def interleaved(runs: dict[str, Callable[[], Sample]], *, rounds: int) -> dict[str, list[Sample]]:
    """Run each side once per round, alternating the order (AB BA AB ...), after a warm-up.

    The warm-up pass (every side once, discarded) pays for connections, caches and first
    calls. Interleaving spreads slow drifts of a shared machine (other processes, the
    autovacuum) over every side instead of charging them to whichever ran last.
    """
    names = list(runs)
    for name in names:
        runs[name]()
    samples: dict[str, list[Sample]] = {name: [] for name in names}
    for round_no in range(rounds):
        order = names if round_no % 2 == 0 else list(reversed(names))
        for name in order:
            samples[name].append(runs[name]())
    return samples


def ratio_line(title: str, a: Figures, b: Figures, *, unit: str = "req") -> str:
    """'title: A/B throughput 0.42x, p50 2.31x, p99 1.80x' plus both sides' inputs."""

    def r(x: float, y: float) -> str:
        return f"{x / y:.2f}x" if y else "n/a"

    return (
        f"RATIO {title}: throughput {r(a.throughput, b.throughput)}, "
        f"p50 {r(a.p50_ms, b.p50_ms)}, p99 {r(a.p99_ms, b.p99_ms)} ({a.label} / {b.label})\n"
        f"    {a.describe(unit)}\n"
        f"    {b.describe(unit)}"
    )
