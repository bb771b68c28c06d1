"""`python -m bench.movelive` (`make load-move`): the run on a stack of its own.

PostgreSQL (durable: fsync on, as deployed) with two placement databases, Redis, users
service and gateway are started in a temporary folder and removed afterwards. Exit 0 when
no request failed and no write was lost, duplicated or left behind (timing targets are
printed, met or MISSED, but do not fail the run), 1 otherwise, 2 when it could not finish.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from bench.movelive.run import GATES, Plan, exit_code, run
from bench.movelive.stack import placed_stack
from kit import children
from kit.procs import ProcessError
from kit.servers import PgServer, ServerError
from services.tenancy.settings import stop_on_bad_setting


class MoveLoadSettings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", case_sensitive=True)

    MOVE_ROWS: int = Field(1_000_000, ge=1000)
    # Requests a second over the ten tenants, and the seconds of load before the first move
    # that the others' p95 during each copy is compared with.
    MOVE_RATE: float = Field(50.0, gt=0)
    MOVE_WINDOW_SECONDS: float = Field(15.0, gt=0)


def _say(line: str) -> None:
    print(line, flush=True)


def main() -> int:
    try:
        settings = MoveLoadSettings()
    except ValidationError as exc:
        stop_on_bad_setting("load-move", exc)
    plan = Plan(
        rows=settings.MOVE_ROWS,
        rate=settings.MOVE_RATE,
        window_seconds=settings.MOVE_WINDOW_SECONDS,
    )
    _say(f"load-move: {plan.rows:,} rows, {os.cpu_count()} CPUs, load {os.getloadavg()}")
    workdir = Path(tempfile.mkdtemp(prefix="tenantkit-move-"))
    workdir.chmod(0o711)  # PostgreSQL runs as `nobody` when we are root
    started = time.monotonic()
    server = PgServer(workdir / "postgres", for_tests=False)
    try:
        server.start()
        with placed_stack(server, workdir) as target:
            figures, _ = run(target, plan, _say)
    except (ServerError, ProcessError, RuntimeError) as exc:
        _say(f"load-move: {exc}")
        return 2
    finally:
        children.stop_all()  # gateway, users service, Redis and PostgreSQL, newest first
        shutil.rmtree(workdir, ignore_errors=True)
    missed = [f.name for f in figures if f.met is False]
    failing = [name for name in missed if name in GATES]
    _say(
        f"load-move: done in {time.monotonic() - started:.0f} s, load {os.getloadavg()}; "
        + (f"MISSED: {', '.join(missed)}" if missed else "every target met")
        + (f"; FAILED: {', '.join(failing)}" if failing else "")
    )
    return exit_code(figures)


if __name__ == "__main__":
    sys.exit(main())
