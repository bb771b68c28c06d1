"""Locust event listeners: tenants at test start, clean-up at stop, verdict and summary at exit."""

from __future__ import annotations

import json
import logging
from dataclasses import asdict
from typing import Any

import gevent
from locust import constant_throughput, events
from locust.env import Environment
from locust.runners import LocalRunner, MasterRunner, WorkerRunner

from loadtests.attackers import HeavyUser, RandomKeyUser, SlowBodyUser
from loadtests.settings import LoadSettings, resolve_admin_token
from loadtests.state import STATE
from loadtests.summary import all_cross_tenant, as_json, measured, per_tenant, response_times
from loadtests.tenants import (
    AdminClient,
    AdminError,
    LoadTenant,
    create_tenants,
    delete_tenants,
    load_tenants,
)
from loadtests.users import FloodUser
from loadtests.verdict import render, verdict

logger = logging.getLogger("loadtests")

TENANTS_MESSAGE = "tenantkit-tenants"
SETUP_FAILED_EXIT = 2


def _settings() -> LoadSettings:
    assert STATE.settings is not None, "the init listener reads the settings first"
    return STATE.settings


@events.init.add_listener
def on_init(environment: Environment, **_: Any) -> None:
    """Read the settings once per process; workers learn the tenants from the master."""
    settings = LoadSettings.load()
    STATE.settings = settings
    # One line per admin call is noise next to Locust's own log.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    FloodUser.fixed_count = settings.LOAD_FLOOD_USERS
    FloodUser.wait_time = constant_throughput(settings.LOAD_FLOOD_RPS_PER_USER)
    SlowBodyUser.fixed_count = settings.LOAD_SLOW_BODY_USERS
    HeavyUser.fixed_count = settings.LOAD_HEAVY_USERS
    RandomKeyUser.fixed_count = settings.LOAD_RANDOM_KEY_USERS
    RandomKeyUser.wait_time = constant_throughput(settings.LOAD_RANDOM_KEY_RPS_PER_USER)
    if isinstance(environment.runner, WorkerRunner):
        environment.runner.register_message(TENANTS_MESSAGE, _receive_tenants)


def _receive_tenants(environment: Environment, msg: Any, **_: Any) -> None:
    data = msg.data
    if data.get("error"):
        STATE.fail_setup(data["error"])
    else:
        STATE.use_tenants(
            [LoadTenant(**t) for t in data["tenants"]],
            users=data["users"],
            stride=data["workers"],
            offset=getattr(environment.runner, "worker_index", 0),
        )


def _planned_users(environment: Environment, settings: LoadSettings) -> int:
    """How many normal users will be bound to tenants (flood users are not)."""
    options = environment.parsed_options
    users = getattr(options, "num_users", None) if options else None
    planned = int(users) if users else settings.LOAD_USERS
    planned -= sum(c.fixed_count for c in _attackers(environment))
    return max(planned, 1)


def _attackers(environment: Environment) -> list[Any]:
    """The flooding and attacking user classes of this run (not bound by the plan)."""
    return [c for c in environment.user_classes if getattr(c, "attacker", False)]


@events.test_start.add_listener
def on_test_start(environment: Environment, **_: Any) -> None:
    """Create the tenants (or read the runner's), then tell the workers."""
    if isinstance(environment.runner, WorkerRunner):
        return
    settings = _settings()
    users = _planned_users(environment, settings)
    try:
        if settings.LOAD_TENANTS_FILE is not None:
            tenants = load_tenants(settings.LOAD_TENANTS_FILE)
        else:
            host = settings.admin_url(environment.host)
            with AdminClient(host, resolve_admin_token(settings)) as admin:
                admin.check()
                tenants = create_tenants(
                    admin,
                    count=settings.LOAD_TENANTS,
                    rate_limits=[settings.LOAD_RATE_LIMIT_PER_SECOND] * settings.LOAD_TENANTS,
                )
            STATE.created_here = True
            ids = ", ".join(f"{t.label}=id {t.id}" for t in tenants)
            logger.info("created %d tenants: %s", len(tenants), ids)
    except (AdminError, OSError, ValueError) as exc:
        message = f"loadtests: cannot set up tenants: {exc}"
        logger.error(message)
        STATE.fail_setup(message)
        _broadcast(environment, {"error": message})
        environment.process_exit_code = SETUP_FAILED_EXIT
        runner = environment.runner
        if runner is not None:
            gevent.spawn(runner.quit)
        return
    STATE.use_tenants(tenants, users=users)
    runner = environment.runner
    workers = len(runner.clients) if isinstance(runner, MasterRunner) else 1
    _broadcast(
        environment,
        {"tenants": [asdict(t) for t in tenants], "users": users, "workers": workers},
    )


def _broadcast(environment: Environment, data: dict[str, Any]) -> None:
    if isinstance(environment.runner, MasterRunner):
        environment.runner.send_message(TENANTS_MESSAGE, data)


@events.test_stop.add_listener
def on_test_stop(environment: Environment, **_: Any) -> None:
    """A local run has stopped its users: its tenants can go."""
    # A master hears test_stop before its workers' last requests are answered; deleting then
    # would revoke keys under them (401s), so it waits for `quitting`.
    if isinstance(environment.runner, LocalRunner):
        _remove_tenants(environment)


def _remove_tenants(environment: Environment) -> None:
    """Delete the tenants this run created, with all their rows, unless LOAD_KEEP=1."""
    if not STATE.created_here:
        return
    settings = _settings()
    if settings.LOAD_KEEP:
        logger.info("LOAD_KEEP=1: the %d load-test tenants stay", len(STATE.tenants))
        return
    try:
        host = settings.admin_url(environment.host)
        with AdminClient(host, resolve_admin_token(settings)) as admin:
            delete_tenants(admin, STATE.tenants)
        STATE.created_here = False
    except (AdminError, OSError, ValueError) as exc:
        logger.error("loadtests: could not delete the load-test tenants: %s", exc)


@events.quitting.add_listener
def on_quitting(environment: Environment, **_: Any) -> None:
    """Print the per-tenant summary and set the exit code from the verdict."""
    if isinstance(environment.runner, WorkerRunner) or STATE.settings is None:
        return
    _remove_tenants(environment)
    if STATE.setup_error:
        print(f"FAILED: {STATE.setup_error}")
        environment.process_exit_code = SETUP_FAILED_EXIT
        return
    settings = _settings()
    stats = environment.stats
    flood_tenant = settings.LOAD_FLOOD_TENANT
    # The flooding tenant's own 429s are the point of the noisy scenario, not a failure.
    flooding = flood_tenant is not None and bool(_attackers(environment))
    excluded = {flood_tenant} if flooding and flood_tenant else set()
    tenants = per_tenant(stats)
    overall = measured(stats, exclude=excluded)
    print()
    print(render(tenants, overall=overall, users=STATE.users_by_tenant()))
    if excluded:
        print(f"({flood_tenant} floods: its requests are left out of the 'all' row and verdict)")
    result = verdict(
        overall, cross_tenant=all_cross_tenant(stats), p95_bound_ms=settings.LOAD_P95_MS
    )
    if result.reasons:
        for reason in result.reasons:
            print(f"FAILED: {reason}")
        environment.process_exit_code = result.exit_code
    else:
        print(
            f"PASSED: no cross-tenant row, failures {overall.fail_ratio:.2%} (<= 1 %), "
            f"p95 {overall.p95_ms:.0f} ms (<= LOAD_P95_MS={settings.LOAD_P95_MS})"
        )
        environment.process_exit_code = 0
    if settings.LOAD_SUMMARY_JSON is not None:
        settings.LOAD_SUMMARY_JSON.write_text(
            json.dumps(
                {
                    "tenants": as_json(tenants),
                    "flood": as_json(per_tenant(stats, flood=True)),
                    "others": asdict(measured(stats, exclude={flood_tenant or ""})),
                    "others_response_times": response_times(stats, exclude={flood_tenant or ""}),
                    "exit_code": environment.process_exit_code,
                }
            )
        )
