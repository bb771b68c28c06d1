"""One run on a placed stack: tenants, load, the heaviest moved out and back, the checks.

`run()` takes a running stack (`Target`), so `python -m bench.movelive` runs it on a stack
of its own and the suite on its fixtures. It returns the figures and what the checks need
(`Outcome`), so a check can be run again on a database someone has tampered with.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from bench.lifecycle import build
from bench.lifecycle.figures import Figure
from bench.movelive import checks, moves
from bench.movelive.load import PROBE_RATE, Load, LoadTenant, zipf
from bench.movelive.stack import DEDICATED, Target

# Figures whose miss fails the run (exit 1): a failed request, a failed move, a row lost,
# duplicated or left behind. Timing figures are reported only: this box is shared.
GATES = (
    "failed requests (moving tenant)",
    "failed requests (other tenants)",
    "move out",
    "move back",
    "rows",
    "hashes",
    "acknowledged writes",
)
NAMES = (
    "build",
    "load",
    *(f"{label}{part}" for label in ("move out", "move back") for part in ("", *moves.PARTS)),
    "failed requests (moving tenant)",
    "failed requests (other tenants)",
    "rows",
    "hashes",
    "acknowledged writes",
)


@dataclass(frozen=True, slots=True)
class Plan:
    """How big and how long."""

    rows: int
    tenants: int = 10
    rate: float = 50.0  # requests a second over all tenants
    window_seconds: float = 15.0  # of load before the first move (the others' quiet p95)
    seed_users: int = 20  # per small tenant, made through the API before the load


@dataclass
class Outcome:
    """What the checks compare: the load's ledgers and the moving tenant's base rows."""

    load: Load
    tenants: list[LoadTenant]
    moving: LoadTenant
    base: checks.Base
    moving_home: str  # where the moving tenant ended (shared, unless a move failed)


def exit_code(figures: list[Figure]) -> int:
    """1 when a correctness figure missed (a failure, a loss, a failed move), else 0."""
    return 1 if any(f.met is False for f in figures if f.name in GATES) else 0


def _tenant(admin: httpx.Client, label: str) -> tuple[int, str]:
    made = admin.post(
        "/admin/tenants",
        json={
            "name": f"move-{secrets.token_hex(3)}-{label}",
            "rate_limit_per_second": 1_000_000,
            "max_in_flight": 0,
        },
    )
    made.raise_for_status()
    return int(made.json()["id"]), str(made.json()["api_key"])


def _seed(gateway_url: str, key: str, label: str, count: int) -> list[int]:
    with httpx.Client(
        base_url=gateway_url, headers={"Authorization": f"Bearer {key}"}, timeout=30
    ) as client:
        ids = []
        for n in range(count):
            made = client.post("/users", json={"name": f"{label} seed {n}"})
            made.raise_for_status()
            ids.append(int(made.json()["id"]))
    return ids


def write_figures(target: Target, outcome: Outcome) -> list[Figure]:
    """Every tenant's users against its ledger, the load stopped."""
    results = {}
    for tenant in outcome.tenants:
        first = max(tenant.read_ids) + 1
        home = outcome.moving_home if tenant is outcome.moving else "shared"
        results[tenant.label] = checks.check_writes(
            target.url_of(home),
            target.url_of(_other(home)),
            tenant.id,
            outcome.load.ledgers[tenant.id],
            first,
        )
    bad = {label: r for label, r in results.items() if not r.ok}
    moving = results[outcome.moving.label]
    problems = "; ".join(
        f"{label}: {len(r.missing or [])} missing (e.g. {(r.missing or [])[:3]}), "
        f"{len(r.extra or [])} unexplained (e.g. {(r.extra or [])[:3]}), {r.elsewhere} elsewhere"
        for label, r in bad.items()
    )
    return [
        Figure(
            "acknowledged writes",
            f"{sum(r.acknowledged for r in results.values()):,} acknowledged writes over "
            f"{len(results)} tenants ({moving.acknowledged:,} of the moving tenant), "
            f"{sum(r.expected for r in results.values()):,} rows they leave: "
            + (problems or "each present exactly once, in its tenant's placement, none elsewhere")
            + (
                f"; {sum(r.unsure for r in results.values())} rows of unanswered writes"
                if any(r.unsure for r in results.values())
                else ""
            ),
            "every one exactly once, where it belongs",
            not bad,
        )
    ]


def run(target: Target, plan: Plan, say: Callable[[str], None]) -> tuple[list[Figure], Outcome]:
    """Measure; print each figure as it comes; return them and the checks' inputs."""
    figures: list[Figure] = []

    def report(items: list[Figure]) -> None:
        for item in items:
            figures.append(item)
            say(str(item))

    admin = httpx.Client(
        base_url=target.gateway_url,
        headers={"Authorization": f"Bearer {target.admin_token}"},
        timeout=httpx.Timeout(30),
    )
    with admin:
        weights = zipf(plan.tenants)
        big_id, big_key = _tenant(admin, "tenant-01")
        say(f"== Build: tenant {big_id} (tenant-01), {plan.rows:,} users as the services' role")
        seconds = build.fill(target.shared.app_url, target.shared.url, big_id, plan.rows, say)
        report([Figure("build", f"{plan.rows:,} rows in {seconds:.1f} s")])
        moving = LoadTenant("tenant-01", big_id, big_key, range(1, plan.rows + 1), weights[0])
        tenants = [moving]
        for n in range(2, plan.tenants + 1):
            label = f"tenant-{n:02d}"
            tenant_id, key = _tenant(admin, label)
            ids = _seed(target.gateway_url, key, label, plan.seed_users)
            tenants.append(LoadTenant(label, tenant_id, key, ids, weights[n - 1]))
        tables = checks.tenant_tables(target.shared.app_url)
        base = checks.base(target.shared.url, tables, big_id)
        shared_before = checks.hashes(target.shared.url, base, big_id)
        rows_before = checks.count(target.shared.url, tables, big_id)
        others = {t.id for t in tenants[1:]}

        say(
            f"== Load: {plan.rate:.0f} req/s over {plan.tenants} tenants (Zipf) and "
            f"{PROBE_RATE:.0f} writes/s more for tenant-01, {plan.window_seconds:.0f} s before "
            "the first move"
        )
        timeout = 600 + plan.rows / 500  # a copy runs at thousands of rows a second
        with Load(target.gateway_url, tenants, rate=plan.rate, probed=frozenset({big_id})) as load:
            started = time.monotonic()
            time.sleep(plan.window_seconds)
            quiet = (started + min(2.0, plan.window_seconds / 4), time.monotonic())
            out = moves.move(admin, big_id, DEDICATED, label="move out", timeout=timeout)
            report(moves.figures(load, big_id, others, out, quiet))
            runs = [out]
            # A failed move leaves the tenant where it was: the checks look there.
            home = DEDICATED if out.done else "shared"
            out_rows = checks.count(target.url_of(home), tables, big_id)
            left_out = checks.count(target.url_of(_other(home)), tables, big_id)
            out_hashes = checks.hashes(target.url_of(home), base, big_id)
            if out.done:
                back = moves.move(admin, big_id, "shared", label="move back", timeout=timeout)
                report(moves.figures(load, big_id, others, back, quiet))
                runs.append(back)
                home = "shared" if back.done else DEDICATED
            else:
                report(moves.not_tried("move back", "the move out failed"))
            time.sleep(2.0)  # the held writes' successors: the gap after the move closes
            stopped = time.monotonic()
        back_hashes = checks.hashes(target.url_of(home), base, big_id)
        rows_after = checks.count(target.url_of(home), tables, big_id)
        left_back = checks.count(target.url_of(_other(home)), tables, big_id)

        groups: list[tuple[str, set[int]]] = [
            ("moving tenant", {big_id}),
            ("other tenants", others),
        ]
        for label, group in groups:
            sent = load.of(group, 0.0, float("inf"))
            failed = [r for r in sent if not r.ok]
            report(
                [
                    Figure(
                        f"failed requests ({label})",
                        f"{len(failed)} of {len(sent):,} over {stopped - started:.0f} s"
                        + (
                            f": {'; '.join(moves.when(r, runs) for r in failed[:3])}"
                            if failed
                            else ""
                        ),
                        "0",
                        not failed,
                    )
                ]
            )
        outcome = Outcome(load, tenants, moving, base, home)
        report(
            [
                Figure(
                    "load",
                    f"{len(load.requests):,} requests, "
                    f"{len(load.requests) / (stopped - started):.0f} req/s, tenant-01 "
                    f"{len(load.of({big_id}, 0.0, float('inf'))):,} of them",
                ),
                Figure(
                    "rows",
                    f"{rows_before:,} in shared before; {out_rows:,} in {_home(out)} after the "
                    f"move out ({left_out} in {_other(_home(out))}); {rows_after:,} in {home} "
                    f"at the end ({left_back} in {_other(home)})",
                    "none left behind",
                    left_out == 0 and left_back == 0,
                ),
                Figure(
                    "hashes",
                    f"the {sum(n for n, _ in shared_before.values()):,} rows from before the "
                    f"load, per table: {_same(shared_before, out_hashes, back_hashes)}",
                    "equal out and back",
                    shared_before == out_hashes == back_hashes,
                ),
            ]
        )
        report(write_figures(target, outcome))
    return figures, outcome


def _other(placement: str) -> str:
    return "shared" if placement == DEDICATED else DEDICATED


def _home(run: moves.MoveRun) -> str:
    """Where the tenant is after `run`: its target when done, else where it was."""
    return run.to if run.done else _other(run.to)


def _same(*sides: checks.Hashes) -> str:
    if sides[0] == sides[1] == sides[2]:
        return "equal before the moves, after the move out and at the end"
    return "DIFFER: " + " / ".join(
        ", ".join(f"{name} {n} {digest[:12]}" for name, (n, digest) in side.items())
        for side in sides
    )
