"""Results that stay: one JSON file and one PNG chart per `make bench` run.

`bench/results/<date>-<host>.json` holds every ratio with both sides' inputs and the machine
it ran on; `<date>-<host>.png` draws each targeted ratio against its target.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import socket
import sys
import textwrap
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.latency import AddedLatency
from bench.measure import Comparison


def machine(load_at_start: tuple[float, float, float]) -> dict[str, Any]:
    """CPUs, load averages at start and end, OS and Python: what the figures depend on."""
    return {
        "host": socket.gethostname(),
        "cpus": os.cpu_count(),
        "load_average_start": list(load_at_start),
        "load_average_end": list(os.getloadavg()),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
    }


def _comparison(c: Comparison) -> dict[str, Any]:
    return {
        "title": c.title,
        "unit": c.unit,
        "ratios": {k: round(v, 4) for k, v in c.ratios.items()},
        "target": None
        if c.target is None
        else {**dataclasses.asdict(c.target), "met": c.target.met(c)},
        "a": dataclasses.asdict(c.a),
        "b": dataclasses.asdict(c.b),
    }


def _latency(x: AddedLatency) -> dict[str, Any]:
    return {
        "concurrency": x.concurrency,
        "added_p50_ms": round(x.added_ms, 4),
        "target_ms": x.target_ms,
        "met": None if x.target_ms is None else x.added_ms <= x.target_ms,
        "gateway_cpu_ms_per_request": (
            None if x.gateway_cpu_ms is None else round(x.gateway_cpu_ms, 4)
        ),
        "load_average": x.load_average,
        "gateway": dataclasses.asdict(x.gateway),
        "direct": dataclasses.asdict(x.direct),
        "bare_hop": None if x.bare_hop is None else dataclasses.asdict(x.bare_hop),
    }


def write(
    folder: Path,
    *,
    scale: str,
    generator: str,
    load_at_start: tuple[float, float, float],
    comparisons: list[Comparison],
    latencies: list[AddedLatency],
) -> tuple[Path, Path]:
    """Write the JSON and the chart; their paths."""
    now = datetime.now(UTC)
    about = machine(load_at_start)
    stem = f"{now:%Y-%m-%d}-{about['host']}"
    folder.mkdir(parents=True, exist_ok=True)
    data = {
        "date": now.isoformat(timespec="seconds"),
        "scale": scale,
        "http_generator": generator,
        "machine": about,
        "comparisons": [_comparison(c) for c in comparisons],
        "added_latency": [_latency(x) for x in latencies],
    }
    json_path = folder / f"{stem}.json"
    json_path.write_text(json.dumps(data, indent=2) + "\n")
    png_path = folder / f"{stem}.png"
    chart(data, png_path)
    return json_path, png_path


def chart(data: dict[str, Any], path: Path) -> None:
    """One horizontal bar per targeted ratio, its target marked; green met, red missed."""
    # Imported here: matplotlib takes a second to import and only this needs it.
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [c for c in data["comparisons"] if c["target"] is not None]
    fig, ax = plt.subplots(figsize=(10, 0.75 * len(rows) + 2))
    ends = []
    for i, c in enumerate(rows):
        target = c["target"]
        value = c["ratios"][target["metric"]]
        ax.barh(i, value, color="#3a7d44" if target["met"] else "#b23a48", height=0.6)
        ax.plot([target["value"]] * 2, [i - 0.4, i + 0.4], color="black", linewidth=2)
        sign = ">=" if target["at_least"] else "<="
        end = max(value, target["value"])
        ends.append(end)
        ax.text(end + 0.03, i, f"{value:.2f}x (target {sign} {target['value']:.2f}x)", va="center")
    labels = [textwrap.fill(f"{c['title']}: {c['target']['metric']}", 45) for c in rows]
    ax.set_yticks(range(len(rows)), labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, max([1.5, *ends]) + 0.9)
    ax.set_xlabel("ratio A / B, as titled (black mark: target; green met, red missed)")
    about = data["machine"]
    load = ", ".join(f"{x:.1f}" for x in about["load_average_start"])
    added = "; ".join(
        f"added p50 at c={x['concurrency']}: {x['added_p50_ms']:.2f} ms"
        + (f" (target <= {x['target_ms']:.2f} ms)" if x["target_ms"] is not None else "")
        for x in data["added_latency"]
    )
    ax.set_title(
        f"make bench {data['date'][:10]} on {about['host']}: {about['cpus']} CPUs, "
        f"load average {load}, {data['http_generator']}, scale {data['scale']}\n{added}",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
