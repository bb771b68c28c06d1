"""One run on a stack: build the large tenant, export it under writes, purge it under load.

`run()` takes a running stack (its gateway's URL and process id, the database's URLs), so
`python -m bench.lifecycle` runs it on a stack of its own and the suite on its fixtures.
Every tenant it creates is purged before it returns, whatever happened.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

from bench.lifecycle import build
from bench.lifecycle.export_run import export_under_writes
from bench.lifecycle.figures import Figure
from bench.lifecycle.purge_run import purge_under_load
from bench.lifecycle.traffic import Tenant
from kit.stacks import Database


@dataclass(frozen=True, slots=True)
class Target:
    """The stack under measurement."""

    gateway_url: str
    gateway_pid: int
    admin_token: str
    database: Database
    # The gateway's output (its purge logs its transactions there), if readable here.
    gateway_log: Path | None = None


@dataclass(frozen=True, slots=True)
class Plan:
    """How big and how long."""

    rows: int
    neighbours: int = 4
    rate: float = 50.0  # neighbours' requests a second during the purge phase
    window_seconds: float = 10.0  # of neighbours' load before and after the purge


def run(target: Target, plan: Plan, workdir: Path, say: Callable[[str], None]) -> list[Figure]:
    """Measure; print each figure as it comes; return them all."""
    figures: list[Figure] = []

    def report(items: list[Figure]) -> None:
        for item in items:
            figures.append(item)
            say(str(item))

    admin = httpx.Client(
        base_url=target.gateway_url,
        headers={"Authorization": f"Bearer {target.admin_token}"},
        timeout=httpx.Timeout(30, read=3600),
    )
    created: list[int] = []
    with admin:
        try:
            big_id, big_key = build.create_tenant(admin, "large")
            created.append(big_id)
            say(f"== Build: tenant {big_id}, {plan.rows:,} users as the services' role")
            seconds = build.fill(
                target.database.app_url, target.database.url, big_id, plan.rows, say
            )
            report([Figure("build", f"{plan.rows:,} rows in {seconds:.1f} s")])
            big = Tenant(big_id, big_key, [1])
            neighbours = []
            for n in range(plan.neighbours):
                neighbours.append(build.neighbour(admin, target.gateway_url, f"neighbour-{n}"))
                created.append(neighbours[-1].id)

            say("== Export through the gateway under concurrent writes")
            report(
                export_under_writes(
                    gateway_url=target.gateway_url,
                    admin_token=target.admin_token,
                    gateway_pid=target.gateway_pid,
                    app_url=target.database.app_url,
                    tenant=big,
                    workdir=workdir,
                )
            )
            say(f"== Purge while {plan.neighbours} other tenants are served")
            report(
                purge_under_load(
                    gateway_url=target.gateway_url,
                    admin_token=target.admin_token,
                    owner_url=target.database.url,
                    app_url=target.database.app_url,
                    tenant=big,
                    neighbours=neighbours,
                    rate=plan.rate,
                    before=plan.window_seconds,
                    after=plan.window_seconds,
                    gateway_log=target.gateway_log,
                )
            )
        finally:
            _purge(admin, created)
    return figures


def _purge(admin: httpx.Client, tenant_ids: list[int]) -> None:
    """The run leaves nothing behind: its tenants are purged (an already purged one is 404)."""
    for tenant_id in tenant_ids:
        for _ in range(3):
            gone = admin.delete(f"/admin/tenants/{tenant_id}", params={"purge": "true"})
            if gone.status_code in (204, 404):
                break
            time.sleep(1)  # 409: a purge of it is still finishing
