"""The attack table's arithmetic: ratios, the attacker's count, issue 9's targets (no Locust)."""

from __future__ import annotations

from typing import Any

from loadtests.attack_report import AttackResult, attacker_figures, render, targets_met


def _figures(p50: float, p95: float, p99: float, failures: float = 0) -> dict[str, float]:
    return {"p50_ms": p50, "p95_ms": p95, "p99_ms": p99, "failures": failures}


def _result(attacked: dict[str, float], fairness: str = "on") -> AttackResult:
    return AttackResult(
        scenario="heavy",
        fairness=fairness,
        quiet=_figures(10, 40, 80),
        attacked=attacked,
        attacker={"requests": 100, "through": 20, "rate_limited": 80},
    )


def test_targets_are_zero_failures_p95_within_1_5x_and_p99_within_2x() -> None:
    assert targets_met(_result(_figures(30, 60, 160)))
    assert not targets_met(_result(_figures(10, 61, 80)))  # p95 1.53x
    assert not targets_met(_result(_figures(10, 40, 161)))  # p99 2.01x
    assert not targets_met(_result(_figures(10, 40, 80, failures=1)))


def test_attacker_through_is_what_the_stack_served_over_all_its_labels() -> None:
    flood: dict[str, Any] = {
        "tenant-01": {"requests": 50, "failures": 45, "rate_limited": 40},
        "random-keys": {"requests": 30, "failures": 30, "rate_limited": 10},
    }
    assert attacker_figures(flood) == {"requests": 80, "through": 5, "rate_limited": 50}


def test_the_table_shows_each_scenario_with_protection_on_and_off_side_by_side() -> None:
    table = render([_result(_figures(12, 50, 90)), _result(_figures(900, 2000, 4000), "off")])
    on, off = (line for line in table.splitlines() if line.startswith("heavy pages"))
    assert on.split()[-1] == "met" and off.split()[-1] == "missed"
    assert "10/40/80" in on and "900/2000/4000" in off
    assert "50.0x" in off  # p95 2000 / 40
    assert "100 / 20" in on
