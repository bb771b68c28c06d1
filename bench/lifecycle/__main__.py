"""`python -m bench.lifecycle` (`make load-lifecycle`): the run on a stack of its own.

PostgreSQL (durable: fsync on, as deployed), Redis, users service and gateway are started
in a temporary folder and removed afterwards. Exit 0 when every figure meets its target,
1 when one misses, 2 when the run could not finish.
"""

from __future__ import annotations

import os
import secrets
import shutil
import sys
import tempfile
import time
from pathlib import Path

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from bench.lifecycle.run import Plan, Target, run
from kit import children
from kit.procs import ProcessError, start_service
from kit.servers import PgServer, RedisServer, ServerError
from kit.stacks import Secrets, gateway_env, new_database, users_env
from services.tenancy.settings import stop_on_bad_setting


class LifecycleLoadSettings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", case_sensitive=True)

    LIFECYCLE_ROWS: int = Field(1_000_000, ge=1000)
    # Neighbours' requests a second during the purge phase, and the seconds of it before
    # and after the purge that p95 during the purge is compared with.
    LIFECYCLE_RATE: float = Field(50.0, gt=0)
    LIFECYCLE_WINDOW_SECONDS: float = Field(10.0, gt=0)


def _say(line: str) -> None:
    print(line, flush=True)


def main() -> int:
    try:
        settings = LifecycleLoadSettings()
    except ValidationError as exc:
        stop_on_bad_setting("load-lifecycle", exc)
    plan = Plan(
        rows=settings.LIFECYCLE_ROWS,
        rate=settings.LIFECYCLE_RATE,
        window_seconds=settings.LIFECYCLE_WINDOW_SECONDS,
    )
    _say(f"load-lifecycle: {plan.rows:,} rows, {os.cpu_count()} CPUs, load {os.getloadavg()}")
    workdir = Path(tempfile.mkdtemp(prefix="tenantkit-lifecycle-"))
    workdir.chmod(0o711)  # PostgreSQL runs as `nobody` when we are root
    started = time.monotonic()
    server = PgServer(workdir / "postgres", for_tests=False)
    try:
        server.start()
        logs = workdir / "logs"
        database = new_database(server, log_dir=logs, name="tenantkit_lifecycle")
        keys = Secrets(*(secrets.token_urlsafe(32) for _ in range(3)))
        redis = RedisServer(workdir / "redis")
        redis.start()
        users = start_service(
            "users", env=users_env(database, keys, redis_url=redis.services_url), log_dir=logs
        )
        env = gateway_env(database=database, redis_url=redis.url, users_url=users.url, secrets=keys)
        gateway = start_service("gateway", env=env, log_dir=logs)
        target = Target(
            gateway.url, gateway.pid, keys.admin_token, database, gateway.child.log_path
        )
        figures = run(target, plan, workdir, _say)
    except (ServerError, ProcessError, RuntimeError) as exc:
        _say(f"load-lifecycle: {exc}")
        return 2
    finally:
        children.stop_all()  # gateway, users service, Redis and PostgreSQL, newest first
        shutil.rmtree(workdir, ignore_errors=True)
    missed = [f.name for f in figures if f.met is False]
    _say(
        f"load-lifecycle: done in {time.monotonic() - started:.0f} s, load {os.getloadavg()}; "
        + (f"MISSED: {', '.join(missed)}" if missed else "every target met")
    )
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
