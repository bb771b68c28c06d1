"""kit.run and kit.psql refuse bad input with one line naming the cause, starting nothing."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

from kit.procs import ROOT, child_env
from kit.servers import free_port


def _run(module: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", module],
        cwd=ROOT,
        env=child_env(env),
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_a_malformed_port_stops_make_run_with_one_line_naming_it(tmp_path: Path):
    result = _run("kit.run", {"KIT_DATA_DIR": str(tmp_path), "GATEWAY_PORT": "80a"})
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "GATEWAY_PORT" in lines[0] and "80a" in lines[0]
    assert not (tmp_path / "postgres").exists()


def test_a_malformed_database_url_stops_make_run_with_one_line_naming_it(tmp_path: Path):
    result = _run("kit.run", {"KIT_DATA_DIR": str(tmp_path), "DATABASE_URL": "mysql://x@y/z"})
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "invalid setting DATABASE_URL" in lines[0]


def test_a_taken_port_stops_make_run_with_one_line_naming_the_variable(tmp_path: Path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = _run(
            "kit.run",
            {
                "KIT_DATA_DIR": str(tmp_path),
                "GATEWAY_PORT": str(free_port()),
                "USERS_PORT": str(port),
            },
        )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "USERS_PORT" in lines[0] and str(port) in lines[0]


def test_make_psql_says_when_no_stack_is_running(tmp_path: Path):
    result = _run("kit.psql", {"KIT_DATA_DIR": str(tmp_path)})
    assert result.returncode == 1
    assert "no stack is running" in result.stderr and "make run" in result.stderr
