"""`make load-noisy`: the other tenants' latency quiet, while one tenant floods, quiet again.

Quiet phases before and after the flood, merged: the first run on fresh tenants pays for
cold caches and the machine drifts, and neither should be charged to the flood.
"""

from __future__ import annotations

import json
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

from loadtests.runner import LOCUSTFILE, NOISY_LOCUSTFILE, report_paths, run_locust
from loadtests.settings import LoadSettings
from loadtests.tenants import AdminClient, LoadTenant, create_tenants, delete_tenants, save_tenants
from loadtests.verdict import histogram_percentile

FLOODER = "tenant-01"
# The promise of a per-tenant limit: a flood costs the others at most this factor.
ALLOWED_SLOWDOWN = 2.0
PERCENTILES = {"p50_ms": 0.50, "p95_ms": 0.95, "p99_ms": 0.99}
# Compared against the bound: p99 is shown, but on a short run it rests on a few requests.
JUDGED = ("p50_ms", "p95_ms")
PHASES = (("quiet-1", False), ("flood", True), ("quiet-2", False))
COUNTS = ("requests", "failures", "rate_limited", "cross_tenant")


def run_noisy(settings: LoadSettings, *, token: str, extra_args: list[str]) -> int:
    """Create the tenants once, run quiet / flood / quiet against them, compare."""
    limits = [settings.LOAD_FLOOD_RATE_LIMIT_PER_SECOND] + [settings.LOAD_RATE_LIMIT_PER_SECOND] * (
        settings.LOAD_TENANTS - 1
    )
    with AdminClient(settings.admin_url(), token) as admin:
        tenants = create_tenants(admin, count=settings.LOAD_TENANTS, rate_limits=limits)
        try:
            with tempfile.TemporaryDirectory(prefix="tenantkit-noisy-") as tmp:
                phases = _run_phases(
                    settings, token=token, workdir=Path(tmp), tenants=tenants, extra_args=extra_args
                )
        finally:
            if not settings.LOAD_KEEP:
                delete_tenants(admin, tenants)
    if phases is None:
        return 2
    quiet = merge_others([phases["quiet-1"], phases["quiet-2"]])
    flood = merge_others([phases["flood"]])
    flooder = phases["flood"]["flood"].get(FLOODER, {})
    print()
    print(compare(phases, quiet=quiet, flood=flood, flooder=flooder, settings=settings))
    return noisy_exit_code(quiet=quiet, flood=flood, flooder=flooder)


def _run_phases(
    settings: LoadSettings,
    *,
    token: str,
    workdir: Path,
    tenants: list[LoadTenant],
    extra_args: list[str],
) -> dict[str, dict[str, Any]] | None:
    tenants_file = workdir / "tenants.json"
    save_tenants(tenants, tenants_file)
    results: dict[str, dict[str, Any]] = {}
    for phase, flooding in PHASES:
        summary = workdir / f"{phase}.json"
        print(f"\n== noisy neighbour: {phase} ({settings.LOAD_NOISY_PHASE_TIME}) ==", flush=True)
        code = run_locust(
            settings,
            locustfile=NOISY_LOCUSTFILE if flooding else LOCUSTFILE,
            report_name=f"noisy-{phase}",
            users=settings.LOAD_USERS + (settings.LOAD_FLOOD_USERS if flooding else 0),
            run_time=settings.LOAD_NOISY_PHASE_TIME,
            env={
                "ADMIN_TOKEN": token,
                "LOAD_TENANTS_FILE": str(tenants_file),
                "LOAD_SUMMARY_JSON": str(summary),
                "LOAD_FLOOD_TENANT": FLOODER,
            },
            extra_args=extra_args,
        )
        print(f"reports: {report_paths(settings, f'noisy-{phase}')}")
        if code == 2 or not summary.exists():
            return None
        results[phase] = json.loads(summary.read_text())
    return results


def merge_others(phases: list[dict[str, Any]]) -> dict[str, float]:
    """The other tenants' figures over several runs, percentiles from the merged histogram."""
    histogram: Counter[int] = Counter()
    for phase in phases:
        histogram.update({int(ms): n for ms, n in phase["others_response_times"].items()})
    merged: dict[str, float] = {
        key: sum(phase["others"][key] for phase in phases) for key in COUNTS
    }
    for key, fraction in PERCENTILES.items():
        merged[key] = histogram_percentile(histogram, fraction)
    return merged


def _ratio(after: float, before: float) -> float:
    return after / before if before else (float("inf") if after else 1.0)


def within_bound(*, quiet: dict[str, float], flood: dict[str, float]) -> bool:
    """Did the others' judged percentiles stay within ALLOWED_SLOWDOWN of their quiet ones?"""
    return all(_ratio(flood[p], quiet[p]) <= ALLOWED_SLOWDOWN for p in JUDGED)


def compare(
    phases: dict[str, dict[str, Any]],
    *,
    quiet: dict[str, float],
    flood: dict[str, float],
    flooder: dict[str, Any],
    settings: LoadSettings,
) -> str:
    """The side-by-side report of the noisy-neighbour scenario."""
    q1, q2 = merge_others([phases["quiet-1"]]), merge_others([phases["quiet-2"]])
    lines = [
        f"noisy neighbour: {FLOODER} floods with {settings.LOAD_FLOOD_USERS} clients x "
        f"{settings.LOAD_FLOOD_RPS_PER_USER:g} req/s against its limit of "
        f"{settings.LOAD_FLOOD_RATE_LIMIT_PER_SECOND}/s; the other {settings.LOAD_TENANTS - 1} "
        "tenants run their normal load throughout",
        f"{'other tenants':<14}{'quiet-1':>9}{'quiet-2':>9}{'quiet':>9}{'flood':>9}"
        f"{'flood/quiet':>13}",
    ]
    for p in PERCENTILES:
        lines.append(
            f"{p.replace('_ms', ' ms'):<14}{q1[p]:>9.0f}{q2[p]:>9.0f}{quiet[p]:>9.0f}"
            f"{flood[p]:>9.0f}{_ratio(flood[p], quiet[p]):>12.2f}x"
        )
    for key in ("requests", "failures", "rate_limited"):
        label = "429s" if key == "rate_limited" else key
        lines.append(
            f"{label:<14}{q1[key]:>9.0f}{q2[key]:>9.0f}{quiet[key]:>9.0f}{flood[key]:>9.0f}"
        )
    lines.append(
        f"flooder {FLOODER}: {flooder.get('requests', 0)} flood requests "
        f"({flooder.get('rps', 0):.0f} req/s), {flooder.get('rate_limited', 0)} answered 429"
    )
    held = "stayed" if within_bound(quiet=quiet, flood=flood) else "did NOT stay"
    lines.append(
        f"the other tenants {held} within {ALLOWED_SLOWDOWN:g}x of their quiet p50 and p95 "
        "during the flood"
    )
    leaks = quiet["cross_tenant"] + flood["cross_tenant"] + flooder.get("cross_tenant", 0)
    if leaks:
        lines.append(f"FAILED: {leaks:.0f} cross-tenant response(s)")
    return "\n".join(lines)


def noisy_exit_code(
    *, quiet: dict[str, float], flood: dict[str, float], flooder: dict[str, Any]
) -> int:
    """1 on a leak, on more than 1 % failures for the others, or when they were not shielded."""
    leaks = quiet["cross_tenant"] + flood["cross_tenant"] + flooder.get("cross_tenant", 0)
    failing = any(f["failures"] > 0.01 * max(f["requests"], 1) for f in (quiet, flood))
    return 1 if leaks or failing or not within_bound(quiet=quiet, flood=flood) else 0
