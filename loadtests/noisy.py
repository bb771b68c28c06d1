"""`make load-noisy`: the other tenants' latency quiet, then while one tenant floods."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from loadtests.runner import LOCUSTFILE, NOISY_LOCUSTFILE, report_paths, run_locust
from loadtests.settings import LoadSettings
from loadtests.tenants import AdminClient, create_tenants, delete_tenants, save_tenants

FLOODER = "tenant-01"
# The promise of a per-tenant limit: a flood costs the others at most this factor.
ALLOWED_SLOWDOWN = 2.0
PERCENTILES = ("p50_ms", "p95_ms", "p99_ms")
# Compared against the bound: p99 is shown, but on a short run it rests on a few requests.
JUDGED = ("p50_ms", "p95_ms")


def run_noisy(settings: LoadSettings, *, token: str, extra_args: list[str]) -> int:
    """Create the tenants once, run the quiet phase then the flood phase, compare."""
    limits = [settings.LOAD_FLOOD_RATE_LIMIT_PER_SECOND] + [settings.LOAD_RATE_LIMIT_PER_SECOND] * (
        settings.LOAD_TENANTS - 1
    )
    with AdminClient(settings.LOCUST_HOST, token) as admin:
        tenants = create_tenants(admin, count=settings.LOAD_TENANTS, rate_limits=limits)
        try:
            with tempfile.TemporaryDirectory(prefix="tenantkit-noisy-") as tmp:
                figures = _phases(
                    settings,
                    token=token,
                    tenants_dir=Path(tmp),
                    tenants=tenants,
                    extra_args=extra_args,
                )
        finally:
            if not settings.LOAD_KEEP:
                delete_tenants(admin, tenants)
    if figures is None:
        return 2
    quiet, flood = figures
    print()
    print(compare(quiet, flood, settings=settings))
    return noisy_exit_code(quiet, flood)


def _phases(
    settings: LoadSettings,
    *,
    token: str,
    tenants_dir: Path,
    tenants: list[Any],
    extra_args: list[str],
) -> tuple[dict[str, Any], dict[str, Any]] | None:
    tenants_file = tenants_dir / "tenants.json"
    save_tenants(tenants, tenants_file)
    results = []
    for phase, locustfile, users in (
        ("quiet", LOCUSTFILE, settings.LOAD_USERS),
        ("flood", NOISY_LOCUSTFILE, settings.LOAD_USERS + settings.LOAD_FLOOD_USERS),
    ):
        summary = tenants_dir / f"{phase}.json"
        title = f"noisy neighbour, {phase} phase ({settings.LOAD_NOISY_PHASE_TIME})"
        print(f"\n== {title} ==", flush=True)
        code = run_locust(
            settings,
            locustfile=locustfile,
            report_name=f"noisy-{phase}",
            users=users,
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
        results.append(json.loads(summary.read_text()))
    return results[0], results[1]


def _ratio(after: float, before: float) -> float:
    return after / before if before else float("inf") if after else 1.0


def within_bound(quiet: dict[str, Any], flood: dict[str, Any]) -> bool:
    """Did the others' judged percentiles stay within ALLOWED_SLOWDOWN of their quiet figures?"""
    q, f = quiet["others"], flood["others"]
    return all(_ratio(f[p], q[p]) <= ALLOWED_SLOWDOWN for p in JUDGED)


def compare(quiet: dict[str, Any], flood: dict[str, Any], *, settings: LoadSettings) -> str:
    """The side-by-side report of the noisy-neighbour scenario."""
    q, f = quiet["others"], flood["others"]
    flooder = flood["flood"].get(FLOODER, {})
    lines = [
        f"noisy neighbour: {FLOODER} floods with {settings.LOAD_FLOOD_USERS} clients x "
        f"{settings.LOAD_FLOOD_RPS_PER_USER:g} req/s against its limit of "
        f"{settings.LOAD_FLOOD_RATE_LIMIT_PER_SECOND}/s; the other {settings.LOAD_TENANTS - 1} "
        "tenants run their normal load",
        f"{'other tenants':<16}{'quiet':>10}{'flood':>10}{'ratio':>8}",
    ]
    for p in PERCENTILES:
        label = p.replace("_ms", " ms")
        lines.append(f"{label:<16}{q[p]:>10.0f}{f[p]:>10.0f}{_ratio(f[p], q[p]):>7.2f}x")
    lines.append(f"{'requests':<16}{q['requests']:>10}{f['requests']:>10}")
    lines.append(f"{'failures':<16}{q['failures']:>10}{f['failures']:>10}")
    lines.append(f"{'429s':<16}{q['rate_limited']:>10}{f['rate_limited']:>10}")
    lines.append(
        f"flooder {FLOODER}: {flooder.get('requests', 0)} flood requests, "
        f"{flooder.get('rate_limited', 0)} answered 429 "
        f"({flooder.get('rps', 0):.0f} req/s sent)"
    )
    held = within_bound(quiet, flood)
    verdict = "stayed" if held else "did NOT stay"
    lines.append(
        f"the other tenants {verdict} within {ALLOWED_SLOWDOWN:g}x of their quiet p50/p95 "
        "during the flood"
    )
    leaks = q["cross_tenant"] + f["cross_tenant"] + flooder.get("cross_tenant", 0)
    if leaks:
        lines.append(f"FAILED: {leaks} cross-tenant response(s)")
    return "\n".join(lines)


def noisy_exit_code(quiet: dict[str, Any], flood: dict[str, Any]) -> int:
    """1 on a leak, on more than 1 % failures for the others, or when they were not shielded."""
    flooder = flood["flood"].get(FLOODER, {})
    leaks = quiet["others"]["cross_tenant"] + flood["others"]["cross_tenant"]
    leaks += flooder.get("cross_tenant", 0)
    failing = any(
        phase["others"]["failures"] > 0.01 * max(phase["others"]["requests"], 1)
        for phase in (quiet, flood)
    )
    return 1 if leaks or failing or not within_bound(quiet, flood) else 0
