"""kit.procs and the pytest plugin: services as real processes, databases, Redis restarts."""

from __future__ import annotations

import subprocess
import sys
import urllib.request
from pathlib import Path

import psutil
import psycopg2
import pytest

from kit.procs import ProcessError, child_env, start_service
from kit.testing import Database

STUB = [sys.executable, str(Path(__file__).with_name("stub_service.py"))]


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.read().decode()


def test_a_started_service_is_ready_and_gone_after_stop(kit_workdir: Path):
    service = start_service("stub", argv=STUB, env={}, log_dir=kit_workdir / "logs")
    assert _get(f"{service.url}/readyz") == '{"status": "ready"}'
    pid = service.pid
    service.stop()
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


def test_a_service_that_dies_at_start_raises_with_its_own_output(kit_workdir: Path):
    with pytest.raises(ProcessError) as excinfo:
        start_service(
            "stub",
            argv=STUB,
            env={"STUB_CRASH": "stub: invalid setting STUB_PORT: nope"},
            log_dir=kit_workdir / "logs",
        )
    assert "exited with 3" in str(excinfo.value)
    assert "invalid setting STUB_PORT: nope" in str(excinfo.value)


def test_services_get_only_the_settings_they_are_given(
    kit_workdir: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("DATABASE_URL", "postgresql://someone@elsewhere/prod")
    service = start_service(
        "stub", argv=STUB, env={"REDIS_URL": "redis://given"}, log_dir=kit_workdir / "logs"
    )
    try:
        assert _get(f"{service.url}/env/DATABASE_URL") == "<unset>"
        assert _get(f"{service.url}/env/REDIS_URL") == "redis://given"
    finally:
        service.stop()


def test_database_is_migrated_and_its_app_url_is_the_restricted_role(database: Database):
    conn = psycopg2.connect(database.app_url)
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT current_user, rolsuper, rolbypassrls FROM pg_roles "
                "WHERE rolname = current_user"
            )
            assert cur.fetchone() == ("tenantkit_app", False, False)
            cur.execute("SELECT count(*) FROM users")
            assert cur.fetchone() == (0,)
        conn.rollback()
        with conn.cursor() as cur, pytest.raises(psycopg2.errors.InsufficientPrivilege):
            cur.execute("SELECT * FROM api_keys")
    finally:
        conn.close()


INNER_SESSION = """
import redis


def test_a_test_may_stop_the_session_redis(redis_server):
    redis_server.stop()
    assert not redis_server.running()


def test_the_next_test_finds_the_session_redis_back_on_its_port(redis_server):
    client = redis.Redis.from_url(redis_server.url, socket_connect_timeout=1)
    try:
        assert client.ping()
    finally:
        client.close()
"""


def test_a_test_that_stops_the_session_redis_leaves_it_back_for_the_next_one(tmp_path: Path):
    # A session of its own, so the two tests always run in this order, one right after the other.
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    (tmp_path / "test_inner.py").write_text(INNER_SESSION)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "kit.testing", "-p", "no:cacheprovider", "-q"],
        cwd=tmp_path,
        env=child_env({}),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 passed" in result.stdout
