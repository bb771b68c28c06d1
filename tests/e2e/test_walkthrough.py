"""The README's tutorial, verbatim, over HTTP: against a fresh stack and against `make run`."""

from __future__ import annotations

import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import psutil
import psycopg2
import pytest
import redis

from kit.datadir import read_env_file
from kit.procs import ROOT, child_env
from kit.servers import PgServer, RedisServer, free_port
from kit.testing import Stack


def insert_tutorial_tenants(database_url: str) -> None:
    """psql "$DATABASE_URL" -c "INSERT INTO tenants (name) VALUES ('Tenant A'), ('Tenant B');"."""
    conn = psycopg2.connect(database_url)
    try:
        with conn, conn.cursor() as cur:
            cur.execute("INSERT INTO tenants (name) VALUES ('Tenant A'), ('Tenant B');")
    finally:
        conn.close()


def walk_through(base_url: str) -> None:
    """The five curl lines of the tutorial, each answer checked."""
    with httpx.Client(base_url=base_url, timeout=10, follow_redirects=False) as client:
        created = []
        for tenant, name in (("1", "Alice"), ("1", "Bob"), ("2", "Charlie")):
            # curl -X POST "$URL/users/" -H "X-Tenant-ID: 1" -d "name=Alice"
            response = client.post("/users/", headers={"X-Tenant-ID": tenant}, data={"name": name})
            assert response.status_code == 201, response.text
            body = response.json()
            assert body["name"] == name
            assert body["tenant_id"] == int(tenant)
            created.append(body)
        # Ids are numbered per tenant: Charlie is tenant 2's first user, whatever tenant 1 did.
        assert [u["id"] for u in created] == [1, 2, 1]

        tenant1 = client.get("/users/", headers={"X-Tenant-ID": "1"})
        assert tenant1.status_code == 200, tenant1.text
        assert [u["name"] for u in tenant1.json()] == ["Alice", "Bob"]
        assert {u["tenant_id"] for u in tenant1.json()} == {1}

        tenant2 = client.get("/users/", headers={"X-Tenant-ID": "2"})
        assert tenant2.status_code == 200, tenant2.text
        assert [u["name"] for u in tenant2.json()] == ["Charlie"]
        assert "Alice" not in tenant2.text and "Bob" not in tenant2.text


def test_tutorial_walkthrough_in_header_mode_gives_each_tenant_only_its_users(
    fresh_stack: Callable[..., Stack],
):
    stack = fresh_stack(gateway_env={"GATEWAY_AUTH_MODES": "header", "GATEWAY_BASE_DOMAIN": None})
    insert_tutorial_tenants(stack.database.url)
    walk_through(stack.url)


class MakeRun:
    """`python -m kit.run` (what `make run` runs) as a subprocess whose output we read."""

    def __init__(self, env: dict[str, str]) -> None:
        self.lines: list[str] = []
        self._new: queue.Queue[str] = queue.Queue()
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "kit.run"],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            self.lines.append(line.rstrip("\n"))
            self._new.put(line)

    def wait_for(self, needle: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self._new.get(timeout=0.5)
            except queue.Empty:
                assert self.popen.poll() is None, "kit.run exited:\n" + "\n".join(self.lines)
                continue
            if needle in line:
                return line
        raise AssertionError(f"no {needle!r} within {timeout} s:\n" + "\n".join(self.lines))

    def printed(self, prefix: str) -> str:
        found = [line.strip() for line in self.lines if line.strip().startswith(prefix)]
        assert found, f"kit.run printed no {prefix!r}:\n" + "\n".join(self.lines)
        return found[0][len(prefix) :].strip()

    def descendants(self) -> list[psutil.Process]:
        return psutil.Process(self.popen.pid).children(recursive=True)

    def terminate(self) -> int:
        self.popen.send_signal(signal.SIGTERM)
        return self.popen.wait(timeout=10)

    def close(self) -> None:
        """Kill it if still running and release its pipe."""
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait()
        self._reader.join(5)
        assert self.popen.stdout is not None
        self.popen.stdout.close()


def _gone(process: psutil.Process) -> bool:
    try:
        return process.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_make_run_serves_the_tutorial_stops_cleanly_and_reuses_its_data(kit_workdir: Path):
    gateway_port, users_port = free_port(), free_port()
    env = child_env(
        {
            "KIT_DATA_DIR": str(kit_workdir / "make-run-data"),
            "GATEWAY_PORT": str(gateway_port),
            "USERS_PORT": str(users_port),
            "GATEWAY_AUTH_MODES": "header",
        }
    )
    url = f"http://localhost:{gateway_port}"

    first = MakeRun(env)
    try:
        first.wait_for("tenantkit is ready", timeout=60)
        assert first.printed("tenantkit is ready:") == url
        database_url = first.printed("export DATABASE_URL=")
        assert database_url.startswith("postgresql://")
        assert len(first.printed("admin token:")) >= 32
        assert any(f'curl -X POST "{url}/users/" -H "X-Tenant-ID: 1"' in ln for ln in first.lines)
        # Each child's output comes through, prefixed with its name.
        for name in ("postgres", "redis", "migrate", "users", "gateway"):
            assert any(re.match(rf"{name} +\| ", ln) for ln in first.lines), name

        insert_tutorial_tenants(database_url)
        walk_through(url)

        data_dir = Path(env["KIT_DATA_DIR"])
        assert (data_dir / "stack.env").stat().st_mode & 0o077 == 0
        assert (data_dir / "secrets.env").stat().st_mode & 0o077 == 0
        assert f"DATABASE_URL={database_url}" in (data_dir / "stack.env").read_text()
        # Its Redis wants a password: one generated per ACL user, kept 0600, none in argv.
        secrets = read_env_file(data_dir / "secrets.env")
        redis_port = int(read_env_file(data_dir / "ports.env")["REDIS_PORT"])
        passwords = {secrets[f"REDIS_{u}_PASSWORD"] for u in ("ADMIN", "GATEWAY", "SERVICES")}
        assert len(passwords) == 3 and all(len(p) >= 32 for p in passwords)
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(port=redis_port, socket_timeout=2).ping()
        redis_server = next(p for p in first.descendants() if p.name() == "redis-server")
        assert not passwords & set(" ".join(redis_server.cmdline()).split())

        started = first.descendants()
        names = {p.name() for p in started}
        assert {"postgres", "redis-server"} <= names, names
        assert sum("python" in n for n in names) >= 1
        assert first.terminate() == 0
        assert [p.pid for p in started if not _gone(p)] == []
        assert not (data_dir / "stack.env").exists()
    finally:
        first.close()
    assert "kit: stopped" in first.lines[-1]

    second = MakeRun(env)
    try:
        second.wait_for("tenantkit is ready", timeout=60)
        assert second.printed("export DATABASE_URL=") == database_url
        with httpx.Client(base_url=url, timeout=10) as client:
            listed = client.get("/users/", headers={"X-Tenant-ID": "1"})
        assert [u["name"] for u in listed.json()] == ["Alice", "Bob"]

        # `make psql` opens psql on the running stack's database.
        psql = subprocess.run(
            [sys.executable, "-m", "kit.psql", "-tAc", "SELECT name FROM tenants ORDER BY id"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert psql.stdout.split() == ["Tenant", "A", "Tenant", "B"], psql.stderr

        # A child that dies takes the whole stack down, with the reason and a failure status.
        started = second.descendants()
        gateway = next(p for p in started if "gateway" in p.cmdline())
        gateway.kill()
        assert second.popen.wait(timeout=10) != 0
        assert [p.pid for p in started if not _gone(p)] == []
        assert any("gateway exited" in line for line in second.lines)
    finally:
        second.close()


def test_make_run_with_given_database_and_redis_starts_neither(
    postgres_server: PgServer, kit_workdir: Path
):
    given = postgres_server.create_database("make_run_given")
    # Its own Redis: tenant ids restart at 1 in this database, the session's cache must not mix.
    redis_server = RedisServer(kit_workdir / "redis-make-run-given")
    redis_server.start()
    gateway_port = free_port()
    env = child_env(
        {
            "KIT_DATA_DIR": str(kit_workdir / "make-run-given"),
            "GATEWAY_PORT": str(gateway_port),
            "USERS_PORT": str(free_port()),
            "GATEWAY_AUTH_MODES": "header",
            "DATABASE_URL": given,
            "REDIS_URL": redis_server.url,
        }
    )
    run = MakeRun(env)
    try:
        run.wait_for("tenantkit is ready", timeout=60)
        assert run.printed("export DATABASE_URL=") == given
        names = {p.name() for p in run.descendants()}
        assert "postgres" not in names and "redis-server" not in names, names
        insert_tutorial_tenants(given)
        walk_through(f"http://localhost:{gateway_port}")
        assert run.terminate() == 0
        assert redis_server.running()
    finally:
        run.close()
        redis_server.stop()
    assert not (kit_workdir / "make-run-given" / "postgres").exists()
