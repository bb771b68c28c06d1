"""`make load-move` at a tiny scale on a placed stack: it reports every figure, and its
checks catch a lost and a misplaced write.

Timing figures are only reported (a 2,000-row tenant measures nothing worth reading); what
is checked is that each is produced, that the correctness ones hold on a sound stack, and
that the same checks fail the run (exit 1) once an acknowledged write is lost or stored in
the placement the tenant left.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from placed_stack import DEDICATED, PlacedStack, placed_stack, rows

from bench.lifecycle.figures import Figure
from bench.movelive.run import GATES, NAMES, Plan, exit_code, run, write_figures
from bench.movelive.stack import Target
from kit.procs import ROOT
from kit.servers import PgServer
from kit.stacks import Secrets


@pytest.fixture(scope="module")
def target(postgres_server: PgServer, secrets: Secrets, kit_workdir: Path) -> Iterator[Target]:
    with placed_stack(postgres_server, secrets, kit_workdir, label="move-load") as placed:
        yield _target(placed)


def _target(placed: PlacedStack) -> Target:
    return Target(
        placed.gateway.url, placed.secrets.admin_token, placed.shared, placed.dedicated_url
    )


def test_a_tiny_move_load_run_reports_every_figure_and_catches_a_lost_write(
    target: Target,
) -> None:
    lines: list[str] = []
    figures, outcome = run(
        target, Plan(rows=2000, rate=30.0, window_seconds=2.0, seed_users=5), lines.append
    )

    print("\n" + "\n".join(lines))
    by_name = {f.name: f for f in figures}
    assert sorted(by_name) == sorted(NAMES)
    assert all(any(line.startswith(f"FIGURE {name}:") for line in lines) for name in NAMES)
    # Every gate, the moving tenant's failed requests included: a write that passed the
    # hold check just before the cut-over and reached the frozen source is sent once more by
    # the gateway (gateway/moveretry.py), not answered 503.
    for name in GATES:
        assert by_name[name].met, by_name[name]
    assert exit_code(figures) == 0
    assert "2,000 rows" in by_name["build"].value
    # The moving tenant wrote during the moves, and every write was checked.
    ledger = outcome.load.ledgers[outcome.moving.id]
    assert ledger.acknowledged > 0 and ledger.rows

    # A lost write: an acknowledged user of the moving tenant vanishes from its placement.
    lost = max(ledger.rows)
    shared, dedicated = target.url_of("shared"), target.url_of(DEDICATED)
    (kept,) = rows(
        shared,
        "DELETE FROM users WHERE tenant_id = %s AND id = %s RETURNING name",
        outcome.moving.id,
        lost,
    )
    caught = write_figures(target, outcome)
    assert caught[0].met is False and f"[{lost}]" in caught[0].value, caught[0]
    assert exit_code(figures[:-1] + caught) == 1

    # Put back where it belongs, it passes again; a copy left in the placement the tenant
    # moved out of fails it.
    rows(
        shared,
        "INSERT INTO users (tenant_id, id, name) VALUES (%s, %s, %s)",
        outcome.moving.id,
        lost,
        kept[0],
    )
    assert write_figures(target, outcome)[0].met
    rows(
        dedicated,
        "INSERT INTO tenants (id) VALUES (%s) ON CONFLICT DO NOTHING",
        outcome.moving.id,
    )
    rows(
        dedicated,
        "INSERT INTO users (tenant_id, id, name) VALUES (%s, %s, %s)",
        outcome.moving.id,
        lost,
        kept[0],
    )
    caught = write_figures(target, outcome)
    assert caught[0].met is False and "1 elsewhere" in caught[0].value, caught[0]


def test_a_failed_move_fails_the_run_and_the_checks_find_the_tenant_where_it_stayed(
    target: Target,
) -> None:
    # The dedicated placement refuses every user row: the move out fails before the switch.
    dedicated = target.url_of(DEDICATED)
    rows(dedicated, "ALTER TABLE users ADD CONSTRAINT no_entry CHECK (false) NOT VALID")
    try:
        figures, outcome = run(
            target, Plan(rows=1000, rate=20.0, window_seconds=1.0, seed_users=2), print
        )
    finally:
        rows(dedicated, "ALTER TABLE users DROP CONSTRAINT no_entry")

    by_name = {f.name: f for f in figures}
    assert sorted(by_name) == sorted(NAMES)
    assert by_name["move out"].met is False and "failed" in by_name["move out"].value
    assert by_name["move back"].met is False and "not attempted" in by_name["move back"].value
    assert exit_code(figures) == 1
    # Nothing lost: the tenant kept being served from shared, and every check looked there.
    assert outcome.moving_home == "shared"
    for name in ("rows", "hashes", "acknowledged writes"):
        assert by_name[name].met, by_name[name]


def test_only_correctness_figures_fail_the_run() -> None:
    timing = Figure("move out write pause", "2500 ms", "<= 2000 ms", False)
    failed = Figure("failed requests (other tenants)", "1 of 900", "0", False)
    assert exit_code([timing]) == 0
    assert exit_code([timing, failed]) == 1


def test_a_malformed_setting_stops_load_move_with_one_line_naming_it() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOVE_")}
    result = subprocess.run(
        [sys.executable, "-m", "bench.movelive"],
        env={**env, "MOVE_ROWS": "many"},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    lines = (result.stdout + result.stderr).strip().splitlines()
    assert len(lines) == 1 and "MOVE_ROWS" in lines[0], lines
