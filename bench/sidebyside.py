"""Two builds side by side: `python -m bench.sidebyside ROOT_A ROOT_B [ROUNDS] [SECONDS]`.

Each root is a checkout (e.g. `git archive main | tar -x -C /tmp/main`); each gets its own
users service and gateway, run from its own code, on one PostgreSQL and one Redis started
here, with a tenant of 50 users. Rounds of `wrk` (required) through each gateway alternate
A, B then B, A: get by id at concurrency 32 and 1, list 50 at 32. Every round prints, per
side, req/s, p50 and the CPU time per request of the users service and of the gateway
(psutil over /proc); the end prints B/A per round (median and range) for each. On a shared
box CPU per request moves less with the load than throughput does. Issue 10's fourth pass
was judged with it (docs/load-and-bench.md).
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path

import psutil

from bench.generator import Load, run_wrk
from bench.proxying import _create_tenant
from bench.stack import HttpStack, migrated_database
from kit.procs import ServiceProcess, start_service
from kit.servers import PgServer, RedisServer
from services.tenancy.dburl import derive_app_url, plain

READS = {
    "get": (lambda ids: [f"/users/{i}" for i in ids], (32, 1)),
    "list50": (lambda ids: ["/users?limit=50"], (32,)),
}
Side = tuple[ServiceProcess, ServiceProcess, str, list[int]]


def _argv(root: str, module: str) -> list[str]:
    # The root's own code first on the path, ahead of the editable install of this checkout.
    code = (
        f"import sys, runpy; sys.path.insert(0, {root!r}); "
        f"runpy.run_module({module!r}, run_name='__main__', alter_sys=True)"
    )
    return [sys.executable, "-c", code]


def _cpu(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


def _stack(root: str, label: str, pg: PgServer, redis: RedisServer, stop: ExitStack) -> Side:
    logs = Path(pg.base_dir).parent / "logs"
    url = migrated_database(pg, name=f"sidebyside_{label.lower()}", log_dir=logs)
    admin, secret = "sidebyside-admin-token-" + label * 16, "sidebyside-signing-" + label * 24
    users = start_service(
        "users",
        env={
            "APP_DATABASE_URL": plain(derive_app_url(url)),
            "INTERNAL_SIGNING_SECRET": secret,
            "METRICS_PER_TENANT": "true",
            "REDIS_URL": redis.services_url,
        },
        log_dir=logs,
        argv=_argv(root, "services.users"),
    )
    stop.callback(users.stop)
    gateway = start_service(
        "gateway",
        env={
            "DATABASE_URL": url,
            "REDIS_URL": redis.url,
            "USERS_URL": users.url,
            "ADMIN_TOKEN": admin,
            "INTERNAL_SIGNING_SECRET": secret,
            "GATEWAY_AUTH_MODES": "api_key",
            "METRICS_PER_TENANT": "true",
        },
        log_dir=logs,
        argv=_argv(root, "gateway"),
    )
    stop.callback(gateway.stop)
    _tenant, key, ids = _create_tenant(HttpStack(gateway.url, users.url, admin, secret), "shared")
    return gateway, users, key, ids


def _round(side: Side, read: str, concurrency: int, seconds: float) -> dict[str, float]:
    gateway, users, key, ids = side
    paths = READS[read][0](ids)
    load = Load(gateway.url, paths, {"Authorization": f"Bearer {key}"}, concurrency)
    users_cpu, gateway_cpu = _cpu(users.pid), _cpu(gateway.pid)
    sample = run_wrk("wrk", load, seconds=seconds)
    n = sample.operations
    return {
        "rps": sample.throughput,
        "p50": (sample.quantiles or {}).get(0.5, 0.0),
        "users_ms": (_cpu(users.pid) - users_cpu) / n * 1000,
        "gw_ms": (_cpu(gateway.pid) - gateway_cpu) / n * 1000,
        "load": psutil.getloadavg()[0],
    }


def run(work: Path, roots: dict[str, str], rounds: int, seconds: float) -> None:
    """Start both stacks, warm them up, then the interleaved rounds; print as it goes."""
    with ExitStack() as stop:
        pg = PgServer(work / "postgres", for_tests=True)
        pg.start()
        stop.callback(pg.stop)
        redis = RedisServer(work / "redis")
        redis.start()
        stop.callback(redis.stop)
        sides = {label: _stack(root, label, pg, redis, stop) for label, root in roots.items()}
        for side in sides.values():
            for read in READS:
                _round(side, read, 32, 1)  # warm-up, discarded
        results: dict[tuple[str, int], list[dict[str, dict[str, float]]]] = {}
        order = list(sides)
        for n in range(rounds):
            for read, (_paths, concurrencies) in READS.items():
                for concurrency in concurrencies:
                    pair = {
                        label: _round(sides[label], read, concurrency, seconds) for label in order
                    }
                    results.setdefault((read, concurrency), []).append(pair)
                    for label in order:
                        figures = {k: round(v, 3) for k, v in pair[label].items()}
                        print(n, read, concurrency, label, json.dumps(figures), flush=True)
            order.reverse()
        for (read, concurrency), pairs in results.items():
            for key in ("rps", "users_ms", "gw_ms"):
                ratios = [pair["B"][key] / pair["A"][key] for pair in pairs]
                print(
                    f"B/A {read} c={concurrency} {key}: median {statistics.median(ratios):.3f}"
                    f" range {min(ratios):.3f}-{max(ratios):.3f} ({len(ratios)} rounds)"
                )


def main() -> None:
    if len(sys.argv) < 3:
        raise SystemExit("usage: python -m bench.sidebyside ROOT_A ROOT_B [ROUNDS] [SECONDS]")
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 6
    seconds = float(sys.argv[4]) if len(sys.argv) > 4 else 3
    with tempfile.TemporaryDirectory(prefix="tenantkit-sidebyside-") as work:
        # Searchable by others: as root the kit runs PostgreSQL as `nobody` (kit/binaries.py).
        Path(work).chmod(0o755)
        run(Path(work), {"A": sys.argv[1], "B": sys.argv[2]}, rounds, seconds)


if __name__ == "__main__":
    main()
