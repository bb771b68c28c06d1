"""Measurements and their comparison: A/B rounds interleaved, medians, one ratio line each."""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True, slots=True)
class Sample:
    """One timed run: a fixed number of operations at a fixed concurrency."""

    operations: int
    concurrency: int
    seconds: float
    latencies: list[float]  # seconds, one per operation
    # Percentiles (fraction -> ms) when the generator reports them instead of latencies (wrk).
    quantiles: dict[float, float] | None = None

    @property
    def throughput(self) -> float:
        return self.operations / self.seconds if self.seconds else 0.0

    def percentile(self, fraction: float) -> float:
        """Nearest-rank percentile of the latencies, in milliseconds."""
        if self.quantiles is not None:
            return self.quantiles[fraction]
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
        # Fixed per round, except with wrk, which runs for a time: then the median count.
        operations=round(statistics.median(s.operations for s in samples)),
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


@dataclass(frozen=True, slots=True)
class Target:
    """What a ratio should be: `metric` (throughput, p50 or p99) at least or at most `value`."""

    metric: Literal["throughput", "p50", "p99"]
    at_least: bool
    value: float

    def met(self, comparison: Comparison) -> bool:
        """Whether the comparison's ratio of this metric is on the right side of the value."""
        ratio = comparison.ratios[self.metric]
        return ratio >= self.value if self.at_least else ratio <= self.value

    def describe(self) -> str:
        """'throughput >= 0.75x'."""
        return f"{self.metric} {'>=' if self.at_least else '<='} {self.value:.2f}x"


@dataclass(frozen=True, slots=True)
class Comparison:
    """A against B: both sides' figures, their ratios, and the target if there is one."""

    title: str
    a: Figures
    b: Figures
    unit: str = "req"
    target: Target | None = None

    @property
    def ratios(self) -> dict[str, float]:
        """A / B of throughput, p50 and p99 (0.0 where B is 0)."""

        def r(x: float, y: float) -> float:
            return x / y if y else 0.0

        return {
            "throughput": r(self.a.throughput, self.b.throughput),
            "p50": r(self.a.p50_ms, self.b.p50_ms),
            "p99": r(self.a.p99_ms, self.b.p99_ms),
        }

    def __str__(self) -> str:
        """'RATIO title: throughput 0.42x, p50 2.31x, p99 1.80x (A / B) [target ...]' + inputs."""
        r = self.ratios
        verdict = ""
        if self.target is not None:
            verdict = (
                f" [target {self.target.describe()}: "
                f"{'met' if self.target.met(self) else 'MISSED'}]"
            )
        return (
            f"RATIO {self.title}: throughput {r['throughput']:.2f}x, p50 {r['p50']:.2f}x, "
            f"p99 {r['p99']:.2f}x ({self.a.label} / {self.b.label}){verdict}\n"
            f"    {self.a.describe(self.unit)}\n"
            f"    {self.b.describe(self.unit)}"
        )
