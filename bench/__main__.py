"""`python -m bench` (`make bench`): the SPEC §9 comparisons, each printed as a ratio line.

Every comparison runs its sides in one process on the same machine, interleaved, and prints
medians; read the ratios, not the absolute figures of a shared 2-core box.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from bench import results
from bench.barehop import bare_hop
from bench.database import (
    check_visibility,
    compare_rls,
    compare_set_local,
    compare_tenant_counts,
)
from bench.dataset import load_users
from bench.generator import generator_name
from bench.http_load import BenchRequestFailed
from bench.latency import AddedLatency, added_latency
from bench.measure import Comparison
from bench.observe_cost import compare_metrics_cost
from bench.pgbench import PgbenchError, find_pgbench
from bench.placement_cost import compare_capture, compare_placements
from bench.proxying import bench_tenant, compare_proxies
from bench.settings import BenchSettings
from bench.stack import http_stack, migrated_database, postgres
from bench.tutorial import compare_with_tutorial, tutorial_server
from kit import children
from kit.procs import ProcessError
from kit.servers import ServerError


def _say(text: str) -> None:
    print(text, flush=True)


def run(settings: BenchSettings, workdir: Path) -> tuple[list[Comparison], list[AddedLatency]]:
    """Start what is needed, measure, print every ratio line; the figures, for the record."""
    scale = settings.scale
    logs = workdir / "logs"
    comparisons: list[Comparison] = []
    latencies: list[AddedLatency] = []

    def say(item: Comparison | str) -> None:
        if isinstance(item, Comparison):
            comparisons.append(item)
        _say(str(item))

    with postgres(workdir) as server:
        _say(
            f"== HTTP: GET /users/{{id}} ({'attached stack' if settings.attached else 'own stack'})"
        )
        started = time.monotonic()
        with (
            http_stack(settings, server=server, workdir=workdir) as stack,
            bench_tenant(stack) as tenant,
            bare_hop(stack.users_url, log_dir=logs) as bare_hop_url,
        ):
            for item in compare_proxies(
                stack, tenant, scale=scale, workdir=workdir, bare_hop_url=bare_hop_url
            ):
                say(item)
            say(compare_metrics_cost(stack, tenant, scale=scale))
            if stack.dedicated is None:
                _say("SKIPPED dedicated vs shared placement: an attached stack has no placement")
            else:
                with bench_tenant(stack, stack.dedicated) as dedicated:
                    say(compare_placements(stack, tenant, dedicated, scale=scale))
            _say(f"   ({time.monotonic() - started:.0f} s)")
            _say("== Added latency: gateway vs direct, GET /users/{id}")
            started = time.monotonic()
            for latency in added_latency(stack, tenant, scale=scale, bare_hop_url=bare_hop_url):
                latencies.append(latency)
                _say(str(latency))
            _say(f"   ({time.monotonic() - started:.0f} s)")
            _say(f"== Full path vs the tutorial's app (load from {generator_name()})")
            started = time.monotonic()
            with tutorial_server(server, log_dir=logs) as (tutorial_url, tutorial_ids):
                for comparison in compare_with_tutorial(
                    gateway_url=stack.gateway_url,
                    api_key=tenant.api_key,
                    user_ids=tenant.user_ids,
                    tutorial_url=tutorial_url,
                    tutorial_ids=tutorial_ids,
                    scale=scale,
                ):
                    say(comparison)
        _say(f"   ({time.monotonic() - started:.0f} s)")

        _say(
            f"== PostgreSQL: {scale.db_users:,} users under {scale.few_tenants} and under "
            f"{scale.many_tenants:,} tenants"
        )
        started = time.monotonic()
        few = migrated_database(server, name="tenantkit_bench_few", log_dir=logs)
        many = migrated_database(server, name="tenantkit_bench_many", log_dir=logs)
        for url, tenants in ((few, scale.few_tenants), (many, scale.many_tenants)):
            load_users(url, tenants=tenants, users=scale.db_users)
            check_visibility(url, tenants=tenants, users=scale.db_users)
        _say(f"   loaded in {time.monotonic() - started:.0f} s")
        started = time.monotonic()
        pgbench = find_pgbench(server.binaries.bindir)
        if pgbench is None:
            _say("SKIPPED tenant counts and RLS: no pgbench next to PostgreSQL or on PATH")
        else:
            say(compare_tenant_counts(pgbench, few, many, scale=scale))
            say(compare_rls(pgbench, many, tenants=scale.many_tenants, scale=scale))
        say(compare_set_local(few, tenants=scale.few_tenants, scale=scale))
        # Last: its writes leave dead rows the reads above should not meet.
        if pgbench is not None:
            say(compare_capture(pgbench, few, tenants=scale.few_tenants, scale=scale))
        _say(f"   ({time.monotonic() - started:.0f} s)")
    return comparisons, latencies


def main() -> int:
    """Run the benchmarks in a temporary folder that is removed afterwards."""
    settings = BenchSettings.load()
    _say(
        f"bench: scale {settings.BENCH_SCALE}, {os.cpu_count()} CPUs; ratios are A/B, "
        "medians of interleaved rounds after a warm-up"
    )
    workdir = Path(tempfile.mkdtemp(prefix="tenantkit-bench-"))
    # PostgreSQL runs as `nobody` when we are root: it must be able to enter the folder.
    workdir.chmod(0o711)
    started = time.monotonic()
    load_at_start = os.getloadavg()
    try:
        comparisons, latencies = run(settings, workdir)
        json_path, png_path = results.write(
            settings.BENCH_RESULTS_DIR,
            scale=settings.BENCH_SCALE,
            generator=generator_name(),
            load_at_start=load_at_start,
            comparisons=comparisons,
            latencies=latencies,
        )
        _say(f"bench: results in {json_path}, chart in {png_path}")
    except (ServerError, ProcessError, PgbenchError, BenchRequestFailed) as exc:
        _say(f"bench: {exc}")
        return 1
    finally:
        children.stop_all()
        shutil.rmtree(workdir, ignore_errors=True)
    _say(f"bench: done in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
