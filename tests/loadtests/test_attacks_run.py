"""`python -m loadtests --attacks` end to end, shrunk: both stacks, all three attacks, real Locust.

No timing is judged here (the machine is shared): the run must produce, for each attack, the
quiet tenants' figures with fairness on and off, the attacker's count, and no leak.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_attacks_report_each_scenario_with_fairness_on_and_off(tmp_path: Path) -> None:
    settings = {
        "LOAD_ATTACK_PHASE_TIME": "2s",
        "LOAD_USERS": "4",
        "LOAD_TENANTS": "2",
        "LOAD_SLOW_BODY_USERS": "3",
        "LOAD_SLOW_BODY_SECONDS": "0.5",
        "LOAD_HEAVY_USERS": "8",
        "LOAD_HEAVY_ROWS": "50",
        "LOAD_RANDOM_KEY_USERS": "1",
        "LOAD_RANDOM_KEY_RPS_PER_USER": "20",
        "LOAD_REPORTS_DIR": str(tmp_path),
        "LOAD_P95_MS": "60000",
    }
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LOAD_", "LOCUST_"))}
    result = subprocess.run(
        [sys.executable, "-m", "loadtests", "--attacks"],
        env={**env, **settings},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    rows = json.loads((tmp_path / "attacks.json").read_text())
    assert [(r["scenario"], r["fairness"]) for r in rows] == [
        ("slow_body", "on"),
        ("slow_body", "off"),
        ("heavy", "on"),
        ("heavy", "off"),
        ("random_keys", "on"),
        ("random_keys", "off"),
    ]
    for row in rows:
        assert row["quiet"]["requests"] > 0 and row["attacked"]["requests"] > 0, row
        assert row["attacker"]["requests"] > 0, row
        assert row["quiet"]["cross_tenant"] == row["attacked"]["cross_tenant"] == 0
    # A junk key is never served, protection or not.
    assert [r["attacker"]["through"] for r in rows if r["scenario"] == "random_keys"] == [0, 0]
    # Slow bodies that end complete reach the service (which refuses none of them by itself).
    assert all(r["attacker"]["through"] > 0 for r in rows if r["scenario"] == "slow_body")
    table = result.stdout[result.stdout.index("quiet tenants' latency") :]
    assert table.count("slow-body attacker") == 2 and table.count("random-key flood") == 2
