"""Running Locust headless as a child process, with the reports where `make load` puts them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from loadtests.settings import LoadSettings, resolve_admin_token
from loadtests.tenants import AdminClient, AdminError

HERE = Path(__file__).resolve().parent
LOCUSTFILE = HERE / "locustfile.py"
NOISY_LOCUSTFILE = HERE / "noisy_locustfile.py"


def preflight(settings: LoadSettings) -> str:
    """The admin token, once the gateway has been seen to accept it; else exit with one line."""
    try:
        token = resolve_admin_token(settings)
        with AdminClient(settings.admin_url(), token) as admin:
            admin.check()
    except (AdminError, ValueError) as exc:
        sys.exit(f"loadtests: {exc}")
    return token


def run_locust(
    settings: LoadSettings,
    *,
    locustfile: Path,
    report_name: str,
    users: int,
    run_time: str,
    env: dict[str, str],
    extra_args: list[str],
) -> int:
    """Run one headless Locust test; its exit code (the verdict of loadtests.lifecycle)."""
    reports = settings.LOAD_REPORTS_DIR
    reports.mkdir(parents=True, exist_ok=True)
    argv = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(locustfile),
        "--headless",
        "--host",
        settings.LOCUST_HOST,
        "--users",
        str(users),
        "--spawn-rate",
        str(settings.LOAD_SPAWN_RATE),
        "--run-time",
        run_time,
        "--stop-timeout",
        "5",
        "--only-summary",
        "--csv",
        str(reports / report_name),
        "--html",
        str(reports / f"{report_name}.html"),
        # Locust's own full table goes to the JSON file; the screen gets the per-tenant summary.
        "--json-file",
        str(reports / report_name),
        *extra_args,
    ]
    # Locust gets a session of its own so that Ctrl-C reaches it once, from here, and not a
    # second time mid-cleanup: a second interrupt would abort the deletion of its tenants.
    process = subprocess.Popen(
        argv,
        env={**os.environ, **env},
        stdin=subprocess.DEVNULL,
        start_new_session=True,
        preexec_fn=_interruptible,
    )
    try:
        return process.wait()
    except KeyboardInterrupt:
        # Let it stop its users, write its reports and delete its tenants, then stop too.
        process.send_signal(signal.SIGINT)
        process.wait()
        raise


def _interruptible() -> None:
    # A shell starts background jobs with SIGINT ignored, and an ignored signal stays
    # ignored across exec: Locust would never see the interrupt it is sent.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def report_paths(settings: LoadSettings, report_name: str) -> str:
    """Where one run's reports are, for the closing line."""
    base = settings.LOAD_REPORTS_DIR / report_name
    return f"{base}.html, {base}_stats.csv, {base}_failures.csv"
