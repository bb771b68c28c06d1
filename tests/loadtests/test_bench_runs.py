"""`make bench` end to end on tiny sizes: it starts what it needs and prints every ratio.

Only that it runs and reports is checked; what the ratios are is for people to read.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
COMPARISONS = (
    "gateway vs direct to users service",
    # A hop's own cost and the gateway's work on top of it (bench/barehop.py).
    "bare Python hop vs direct",
    "gateway vs bare Python hop",
    "reads with 100 tenants vs 10 tenants",
    "reads with row-level security in force vs off",
    "SET LOCAL in its own round trip vs in the first statement's",
    "full path vs tutorial app (get by id)",
    "full path vs tutorial app (list 50)",
    "reads of a tenant in a dedicated placement vs in shared",
    "writes with the move-capture trigger vs without",
)
# Issue 10's (and 11's) targets, printed beside their ratios.
TARGETS = {
    "gateway vs direct to users service": "throughput >= 0.75x",
    "reads with 100 tenants vs 10 tenants": "p50 <= 1.10x",
    "reads with row-level security in force vs off": "p50 <= 1.15x",
    "full path vs tutorial app (get by id)": "throughput >= 1.00x",
    "full path vs tutorial app (list 50)": "throughput >= 1.00x",
    # Issue 11: a dedicated tenant's request costs no more than a shared one's.
    "reads of a tenant in a dedicated placement vs in shared": "throughput >= 0.95x",
}
RATIO = r"throughput \d+\.\d\dx, p50 \d+\.\d\dx, p99 \d+\.\d\dx"


def test_bench_prints_every_ratio_with_its_inputs_at_tiny_scale(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BENCH_", "PG"))}
    result = subprocess.run(
        [sys.executable, "-m", "bench"],
        env={**env, "BENCH_SCALE": "tiny", "BENCH_RESULTS_DIR": str(tmp_path)},
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
        if title in TARGETS:
            assert re.search(rf"\[target {re.escape(TARGETS[title])}: (met|MISSED)\]$", line), line
    # Both sides' inputs follow each ratio: requests, rounds, concurrency, throughput, p50/p99.
    inputs = re.findall(
        r"^    .+: \d+ \w+ x \d+ rounds, concurrency \d+, .+/s, p50 .+ ms, p99 .+ ms$", out, re.M
    )
    assert len(inputs) >= 2 * len(COMPARISONS)
    # nginx is optional: either measured or said to be skipped, never silently missing.
    assert "RATIO gateway vs nginx proxy_pass" in out or "nginx not installed, skipped" in out
    # The gateway's added median at concurrency 1 (with its 0.5 ms goal) and 32.
    assert re.search(
        r"^ADDED gateway p50 over direct at concurrency 1: -?\d+\.\d\d ms .+"
        r"\[target <= 0\.50 ms: (met|MISSED)\]$",
        out,
        re.M,
    ), out
    assert re.search(r"^ADDED gateway p50 over direct at concurrency 32: -?\d+\.\d\d ms", out, re.M)
    # Beside each added median, the gateway's own CPU per request, which the load cannot swing.
    cpu = re.findall(r"^    gateway CPU per request: (\d+\.\d\d) ms .+load average", out, re.M)
    assert len(cpu) == 2 and all(float(ms) > 0 for ms in cpu), out
    # And what a featureless Python hop adds, the floor under the gateway's figure.
    bare = re.findall(
        r"^    bare Python hop \(uvicorn \+ aiohttp, no checks\) p50 over direct: ", out, re.M
    )
    assert len(bare) == 2, out
    _check_results(tmp_path)


def _check_results(folder: Path) -> None:
    """The run's JSON holds every ratio with its inputs and the machine; the chart is a PNG."""
    (json_file,) = folder.glob("*.json")
    (png_file,) = folder.glob("*.png")
    assert png_file.stem == json_file.stem
    data = json.loads(json_file.read_text())
    assert data["machine"]["cpus"] == os.cpu_count()
    assert len(data["machine"]["load_average_start"]) == 3
    by_title = {c["title"].split(" (")[0]: c for c in data["comparisons"]}
    for title in ("full path vs tutorial app", "gateway vs direct to users service"):
        assert title in by_title, sorted(by_title)
    tutorial = [c for c in data["comparisons"] if c["title"].startswith("full path vs tutorial")]
    assert len(tutorial) == 2
    for c in tutorial:
        assert c["target"] == {
            "metric": "throughput",
            "at_least": True,
            "value": 1.0,
            "met": c["ratios"]["throughput"] >= 1.0,
        }
        assert c["a"]["label"] == "full path" and c["b"]["label"] == "tutorial app"
        assert c["b"]["throughput"] > 0 and c["a"]["operations"] > 0
        assert c["ratios"]["throughput"] == round(c["a"]["throughput"] / c["b"]["throughput"], 4)
    assert [x["concurrency"] for x in data["added_latency"]] == [1, 32]
    assert all(x["gateway_cpu_ms_per_request"] > 0 for x in data["added_latency"])
    assert all(x["bare_hop"]["throughput"] > 0 for x in data["added_latency"])
    # A real chart: PNG signature, and more than an empty canvas.
    png = png_file.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000


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
