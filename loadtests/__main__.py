"""`python -m loadtests` (`make load`); `--noisy` and `--attacks` (`make load-noisy`).

Arguments after the options go to Locust unchanged, e.g. `--master --expect-workers 2`.
"""

from __future__ import annotations

import argparse
import signal
import sys

from loadtests.attacks import run_attacks
from loadtests.noisy import run_noisy
from loadtests.runner import LOCUSTFILE, preflight, report_paths, run_locust
from loadtests.settings import LoadSettings


def _interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    """Run the load test chosen on the command line; its exit code."""
    parser = argparse.ArgumentParser(
        prog="python -m loadtests",
        description="Per-tenant Locust load test against a running tenantkit gateway.",
    )
    parser.add_argument(
        "--noisy", action="store_true", help="one tenant floods; report how the others fare"
    )
    parser.add_argument(
        "--attacks",
        action="store_true",
        help="slow bodies, heavy pages, random keys, each against a stack with fairness on "
        "and one with it off (started here)",
    )
    args, locust_args = parser.parse_known_args(argv)
    # A supervisor's SIGTERM ends the run as Ctrl-C does: reports written, tenants deleted.
    signal.signal(signal.SIGTERM, _interrupt)
    settings = LoadSettings.load()
    if args.attacks:
        return run_attacks(settings, extra_args=locust_args)
    token = preflight(settings)
    if args.noisy:
        return run_noisy(settings, token=token, extra_args=locust_args)
    code = run_locust(
        settings,
        locustfile=LOCUSTFILE,
        report_name="load",
        users=settings.LOAD_USERS,
        run_time=settings.LOAD_TIME,
        env={"ADMIN_TOKEN": token},
        extra_args=locust_args,
    )
    print(f"reports: {report_paths(settings, 'load')}")
    return code


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
