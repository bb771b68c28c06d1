"""deploy/pgbouncer/entrypoint.sh writes the server-side timeouts into pgbouncer.ini.

Runs the real script with a stand-in `pgbouncer` on PATH that prints the file it is given
(the image's PgBouncer itself is exercised under `make test-compose`).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ENTRYPOINT = ROOT / "deploy" / "pgbouncer" / "entrypoint.sh"
BASE_ENV = {
    "PGBOUNCER_DATABASE": "tenantkit",
    "PGBOUNCER_SERVER_HOST": "postgres",
    "PGBOUNCER_USERS": "tenantkit_app",
    "PGBOUNCER_PASSWORD_TENANTKIT_APP": "secret",
}


def _run(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    stub = tmp_path / "pgbouncer"
    stub.write_text('#!/bin/sh\ncat "$1"\n')
    stub.chmod(0o755)
    return subprocess.run(
        ["bash", str(ENTRYPOINT)],
        env={"PATH": f"{tmp_path}{os.pathsep}{os.environ['PATH']}", **BASE_ENV, **env},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_server_connections_get_statement_and_idle_in_transaction_timeouts(
    tmp_path: Path,
) -> None:
    result = _run(tmp_path, PGBOUNCER_IDLE_IN_TRANSACTION_TIMEOUT_MS="2500")
    assert result.returncode == 0, result.stderr
    assert (
        "connect_query='SET statement_timeout = 4000; "
        "SET idle_in_transaction_session_timeout = 2500'"
    ) in result.stdout
    # PgBouncer's own bound is whole seconds, rounded up.
    assert "\nidle_transaction_timeout = 3\n" in result.stdout


def test_defaults_bound_an_idle_transaction_to_ten_seconds(tmp_path: Path) -> None:
    result = _run(tmp_path)
    assert "SET idle_in_transaction_session_timeout = 10000'" in result.stdout
    assert "\nidle_transaction_timeout = 10\n" in result.stdout


@pytest.mark.parametrize("value", ["0", "10s", "-1"])
def test_a_bad_idle_timeout_stops_with_one_line(tmp_path: Path, value: str) -> None:
    result = _run(tmp_path, PGBOUNCER_IDLE_IN_TRANSACTION_TIMEOUT_MS=value)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "pgbouncer: invalid setting PGBOUNCER_IDLE_IN_TRANSACTION_TIMEOUT_MS: "
        "not a positive whole number of milliseconds"
    )
