"""`make bench` end to end on tiny sizes: it starts what it needs and prints every ratio.

Only that it runs and reports is checked; what the ratios are is for people to read.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
COMPARISONS = (
    "gateway vs direct to users service",
    "reads with 100 tenants vs 10 tenants",
    "reads with row-level security in force vs off",
    "SET LOCAL in its own round trip vs in the first statement's",
)
RATIO = r"throughput \d+\.\d\dx, p50 \d+\.\d\dx, p99 \d+\.\d\dx"


def test_bench_prints_every_ratio_with_its_inputs_at_tiny_scale() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BENCH_", "PG"))}
    result = subprocess.run(
        [sys.executable, "-m", "bench"],
        env={**env, "BENCH_SCALE": "tiny"},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    for title in COMPARISONS:
        line = next((x for x in out.splitlines() if x.startswith(f"RATIO {title}")), None)
        assert line is not None, f"no ratio line for {title!r}:\n{out}"
        assert re.search(RATIO, line), line
    # Both sides' inputs follow each ratio: requests, rounds, concurrency, throughput, p50/p99.
    inputs = re.findall(
        r"^    .+: \d+ \w+ x \d+ rounds, concurrency \d+, .+/s, p50 .+ ms, p99 .+ ms$", out, re.M
    )
    assert len(inputs) >= 2 * len(COMPARISONS)
    # nginx is optional: either measured or said to be skipped, never silently missing.
    assert "RATIO gateway vs nginx proxy_pass" in out or "nginx not installed, skipped" in out


def test_unknown_bench_scale_stops_with_one_line_naming_it() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BENCH_")}
    result = subprocess.run(
        [sys.executable, "-m", "bench"],
        env={**env, "BENCH_SCALE": "huge"},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode != 0
    lines = (result.stdout + result.stderr).strip().splitlines()
    assert len(lines) == 1 and "BENCH_SCALE" in lines[0]
