"""`make load-lifecycle` at a tiny scale on the suite's stack: it produces every figure.

The figures of speed are only reported (a 2,000-row tenant measures nothing worth reading);
what is checked is that each is produced, that the correctness ones hold (archive equal to
a snapshot query, writes during the export as stored, zero rows after the purge), and that
the run leaves none of its tenants behind.
"""

from __future__ import annotations

from pathlib import Path

import httpx

from bench.lifecycle.figures import NAMES
from bench.lifecycle.run import Plan, Target, run
from kit.stacks import Database, Secrets
from kit.testing import StartService


def test_a_tiny_lifecycle_load_run_reports_every_figure_and_cleans_up(
    start_service: StartService,
    admin: httpx.Client,
    database: Database,
    secrets: Secrets,
    tmp_path: Path,
) -> None:
    # A gateway of its own even against an external stack: the run samples its memory and
    # reads its log, which a compose or k8s gateway does not offer.
    gateway = start_service("gateway")
    before = {t["id"] for t in admin.get("/admin/tenants").json()}
    lines: list[str] = []
    figures = run(
        Target(gateway.url, gateway.pid, secrets.admin_token, database, gateway.child.log_path),
        Plan(rows=2000, neighbours=2, rate=20.0, window_seconds=1.0),
        tmp_path,
        lines.append,
    )

    print("\n" + "\n".join(lines))
    by_name = {f.name: f for f in figures}
    assert sorted(by_name) == sorted(NAMES)
    assert all(any(line.startswith(f"FIGURE {name}:") for line in lines) for name in NAMES)
    for name in ("export hashes", "export writes", "purge verification scan"):
        assert by_name[name].met, by_name[name]
    assert "2,000 rows" in by_name["build"].value
    after = {t["id"] for t in admin.get("/admin/tenants").json()}
    assert after <= before, f"tenants left behind: {after - before}"
