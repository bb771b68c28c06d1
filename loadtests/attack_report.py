"""The attack scenarios' table: the quiet tenants quiet vs under attack, protection on vs off.

No Locust import here (it gevent-patches the process), so the suite tests this directly.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

# Issue 9's targets for the quiet tenants while protection is on.
P95_TARGET = 1.5
P99_TARGET = 2.0
PERCENTILES = ("p50_ms", "p95_ms", "p99_ms")
DESCRIPTIONS = {
    "slow_body": "slow-body attacker",
    "heavy": "heavy pages within its rate limit",
    "random_keys": "random-key flood",
}


@dataclass(frozen=True, slots=True)
class AttackResult:
    """One scenario on one stack: the quiet tenants' figures quiet and attacked, the attacker's."""

    scenario: str
    fairness: str  # "on" | "off"
    quiet: Mapping[str, float]
    attacked: Mapping[str, float]
    attacker: Mapping[str, float]


def ratio(after: float, before: float) -> float:
    """after / before; 1.0 when both are 0, infinite when only before is."""
    return after / before if before else (float("inf") if after else 1.0)


def attacker_figures(flood: Mapping[str, Mapping[str, Any]]) -> dict[str, float]:
    """The attacker's requests over all its labels: sent, got through (served), refused 429."""
    sent = sum(float(f["requests"]) for f in flood.values())
    refused = sum(float(f["failures"]) for f in flood.values())
    return {
        "requests": sent,
        "through": sent - refused,
        "rate_limited": sum(float(f["rate_limited"]) for f in flood.values()),
    }


def targets_met(result: AttackResult) -> bool:
    """No failed request for the quiet tenants, p95 within 1.5x and p99 within 2x of quiet."""
    q, a = result.quiet, result.attacked
    return (
        a["failures"] == 0
        and ratio(a["p95_ms"], q["p95_ms"]) <= P95_TARGET
        and ratio(a["p99_ms"], q["p99_ms"]) <= P99_TARGET
    )


def render(results: Sequence[AttackResult]) -> str:
    """One table, two rows (fairness on, off) per scenario."""
    head = (
        f"{'attack':<34}{'fair':>5}{'quiet p50/p95/p99':>20}{'attacked p50/p95/p99':>23}"
        f"{'p95 x':>7}{'p99 x':>7}{'failed':>8}{'attacker sent/through':>23}{'target':>8}"
    )
    lines = ["quiet tenants' latency (ms) quiet vs during each attack", head, "-" * len(head)]
    for r in results:
        q, a, x = r.quiet, r.attacked, r.attacker
        quiet = "/".join(f"{q[p]:.0f}" for p in PERCENTILES)
        attacked = "/".join(f"{a[p]:.0f}" for p in PERCENTILES)
        met = "met" if targets_met(r) else "missed"
        lines.append(
            f"{DESCRIPTIONS.get(r.scenario, r.scenario):<34}{r.fairness:>5}{quiet:>20}"
            f"{attacked:>23}{ratio(a['p95_ms'], q['p95_ms']):>6.1f}x"
            f"{ratio(a['p99_ms'], q['p99_ms']):>6.1f}x{a['failures']:>8.0f}"
            f"{x['requests']:>14.0f} / {x['through']:<6.0f}{met:>8}"
        )
    lines.append(
        f"target (fairness on): 0 failed, p95 <= {P95_TARGET:g}x and p99 <= {P99_TARGET:g}x "
        "quiet; 'through' = attacker requests the stack served"
    )
    return "\n".join(lines)
