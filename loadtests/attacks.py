"""`python -m loadtests --attacks` (part of `make load-noisy`): issue 9's three attacks.

Each attack runs against a stack with `TENANT_FAIRNESS=on` and against one with `off`, both
started here in one run (same PostgreSQL server, a database and a Redis each), so the table
shows side by side what the protection buys. Per stack: quiet, each attack in turn, quiet
again; the two quiet runs are merged (as in the noisy-neighbour scenario).
"""

from __future__ import annotations

import json
import secrets
import sys
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import psycopg2

from loadtests.attack_report import AttackResult, attacker_figures, render
from loadtests.isolation import name_marker
from loadtests.noisy import FLOODER, merge_others
from loadtests.runner import HERE, report_paths, run_locust
from loadtests.settings import LoadSettings
from loadtests.tenants import (
    AdminClient,
    LoadTenant,
    create_tenants,
    delete_tenants,
    save_tenants,
)

ATTACK_LOCUSTFILE = HERE / "attack_locustfile.py"
# Scenario name -> (Locust user class, the setting that says how many of them).
ATTACKERS = {
    "slow_body": ("SlowBodyUser", "LOAD_SLOW_BODY_USERS"),
    "heavy": ("HeavyUser", "LOAD_HEAVY_USERS"),
    "random_keys": ("RandomKeyUser", "LOAD_RANDOM_KEY_USERS"),
}


@dataclass(frozen=True, slots=True)
class AttackStack:
    url: str
    admin_token: str
    owner_url: str


def run_attacks(settings: LoadSettings, *, extra_args: list[str]) -> int:
    """Both stacks, every attack; print the table; 1 on a cross-tenant row, 2 on setup failure."""
    try:
        # Developer tooling: a Locust image ships without the kit and cannot start stacks.
        from kit.servers import PgServer
    except ImportError:
        print("loadtests: --attacks starts its own stacks: run it from a checkout", file=sys.stderr)
        return 2
    results: list[AttackResult] = []
    with tempfile.TemporaryDirectory(prefix="tenantkit-attacks-") as tmp:
        workdir = Path(tmp)
        # Searchable by others: run as root, the kit starts PostgreSQL as another user.
        workdir.chmod(0o711)
        server = PgServer(workdir / "postgres", for_tests=True)
        server.start()
        try:
            for fairness in ("on", "off"):
                with _stack(server, workdir=workdir, fairness=fairness) as stack:
                    found = _attack(settings, stack, fairness=fairness, extra_args=extra_args)
                if found is None:
                    return 2
                results += found
        finally:
            server.stop()
    order = settings.attacks
    results.sort(key=lambda r: (order.index(r.scenario), r.fairness != "on"))
    print()
    print(render(results))
    saved = settings.LOAD_REPORTS_DIR / "attacks.json"
    saved.write_text(json.dumps([asdict(r) for r in results], indent=1))
    print(f"figures: {saved}")
    leaks = sum(r.quiet["cross_tenant"] + r.attacked["cross_tenant"] for r in results)
    if leaks:
        print(f"FAILED: {leaks:.0f} cross-tenant response(s)")
    return 1 if leaks else 0


@contextmanager
def _stack(server: Any, *, workdir: Path, fairness: str) -> Iterator[AttackStack]:
    """Database, Redis, users service and gateway, all with TENANT_FAIRNESS=`fairness`."""
    from kit.procs import start_service
    from kit.servers import RedisServer
    from kit.stacks import Secrets, gateway_env, new_database, users_env

    logs = workdir / "logs"
    keys = Secrets(*(secrets.token_urlsafe(32) for _ in range(3)))
    database = new_database(server, log_dir=logs, name=f"tenantkit_attacks_{fairness}")
    with ExitStack() as stop:
        redis = RedisServer(workdir / f"redis-{fairness}")
        redis.start()
        stop.callback(redis.stop)
        switch = {"TENANT_FAIRNESS": fairness}
        # As kit.testing's fresh_stack: the services get Redis's `services` user.
        own = users_env(database, keys, redis_url=redis.services_url)
        users = start_service("users", env={**own, **switch}, log_dir=logs)
        stop.callback(users.stop)
        env = gateway_env(database=database, redis_url=redis.url, users_url=users.url, secrets=keys)
        gateway = start_service("gateway", env={**env, **switch}, log_dir=logs)
        stop.callback(gateway.stop)
        yield AttackStack(url=gateway.url, admin_token=keys.admin_token, owner_url=database.url)


def _seed(owner_url: str, tenant: LoadTenant, rows: int) -> None:
    """`rows` users for the heavy attacker's tenant, written by the owner in one statement."""
    conn = psycopg2.connect(owner_url)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(
                "INSERT INTO users (tenant_id, name) "
                "SELECT %s, 'Heavy ' || g || ' ' || %s FROM generate_series(1, %s) g",
                (tenant.id, name_marker(tenant.id), rows),
            )
    finally:
        conn.close()


def _attack(
    settings: LoadSettings, stack: AttackStack, *, fairness: str, extra_args: list[str]
) -> list[AttackResult] | None:
    with AdminClient(stack.url, stack.admin_token) as admin:
        tenants = create_tenants(
            admin,
            count=settings.LOAD_TENANTS,
            rate_limits=[settings.LOAD_RATE_LIMIT_PER_SECOND] * settings.LOAD_TENANTS,
        )
    try:
        figures = _phases(settings, stack, tenants, fairness=fairness, extra_args=extra_args)
    finally:
        # Like every load test: what it creates goes (the stack's database goes too, after).
        with AdminClient(stack.url, stack.admin_token) as admin:
            delete_tenants(admin, tenants)
    if figures is None:
        return None
    quiet = merge_others([figures["quiet-1"], figures["quiet-2"]])
    return [
        AttackResult(
            scenario=name,
            fairness=fairness,
            quiet=quiet,
            attacked=merge_others([figures[name]]),
            attacker=attacker_figures(figures[name]["flood"]),
        )
        for name in settings.attacks
    ]


def _phases(
    settings: LoadSettings,
    stack: AttackStack,
    tenants: list[LoadTenant],
    *,
    fairness: str,
    extra_args: list[str],
) -> dict[str, dict[str, Any]] | None:
    """Seed the heavy tenant, run quiet / each attack / quiet; each phase's figures."""
    flooder = next(t for t in tenants if t.label == FLOODER)
    _seed(stack.owner_url, flooder, settings.LOAD_HEAVY_ROWS)
    with tempfile.TemporaryDirectory(prefix="tenantkit-attack-phases-") as tmp:
        workdir = Path(tmp)
        save_tenants(tenants, workdir / "tenants.json")
        figures: dict[str, dict[str, Any]] = {}
        for phase in ["quiet-1", *settings.attacks, "quiet-2"]:
            found = _phase(
                settings, stack, phase=phase, fairness=fairness, workdir=workdir, extra=extra_args
            )
            if found is None:
                return None
            figures[phase] = found
    return figures


def _phase(
    settings: LoadSettings,
    stack: AttackStack,
    *,
    phase: str,
    fairness: str,
    workdir: Path,
    extra: list[str],
) -> dict[str, Any] | None:
    """One Locust run: the normal users, plus the phase's attacker; its summary figures."""
    classes = ["TenantUser"]
    attackers = 0
    if phase in ATTACKERS:
        cls, count_setting = ATTACKERS[phase]
        classes.append(cls)
        attackers = int(getattr(settings, count_setting))
    users = settings.LOAD_USERS + attackers
    # Everyone at once: the attack starts with the phase, not seconds into it.
    here = settings.model_copy(update={"LOCUST_HOST": stack.url, "LOAD_SPAWN_RATE": users})
    summary = workdir / f"{phase}.json"
    report = f"attack-{fairness}-{phase}"
    print(f"\n== attacks, fairness {fairness}: {phase} ({settings.LOAD_ATTACK_PHASE_TIME}) ==")
    code = run_locust(
        here,
        locustfile=ATTACK_LOCUSTFILE,
        report_name=report,
        users=users,
        run_time=settings.LOAD_ATTACK_PHASE_TIME,
        env={
            "ADMIN_TOKEN": stack.admin_token,
            "LOAD_TENANTS_FILE": str(workdir / "tenants.json"),
            "LOAD_SUMMARY_JSON": str(summary),
            "LOAD_FLOOD_TENANT": FLOODER,
        },
        extra_args=[*extra, *classes],
    )
    print(f"reports: {report_paths(settings, report)}", flush=True)
    if code == 2 or not summary.exists():
        return None
    result: dict[str, Any] = json.loads(summary.read_text())
    return result
