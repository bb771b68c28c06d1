"""The README's tutorial, its lines extracted from the README: on a fresh stack and `make run`."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import redis
from doclines import DocLine, Reader, names_in, sh_blocks
from makerun import MakeRun, gone

from gateway.tests.factories import wait_for
from kit.datadir import read_env_file
from kit.procs import ROOT, child_env
from kit.servers import PgServer, RedisServer, free_port
from kit.stacks import reset_role_passwords
from kit.testing import Database, Stack


def tutorial() -> list[DocLine]:
    """The README's tutorial block: its psql line, then its curl lines (X-Tenant-ID)."""
    blocks = [b for b in sh_blocks(ROOT / "README.md") if any("X-Tenant-ID" in c.text for c in b)]
    assert len(blocks) == 1, blocks
    assert [c.text.split()[0] for c in blocks[0]][:1] == ["psql"], blocks[0]
    return blocks[0]


def insert_tutorial_tenants(database_url: str) -> None:
    """The tutorial's psql line, as the README gives it."""
    Reader(base_url="", database_url=database_url, admin_token="").run(tutorial()[0])


def walk_through(base_url: str) -> None:
    """The tutorial's curl lines, extracted from the README, each answer checked."""
    reader = Reader(base_url=base_url, database_url="", admin_token="")
    created = []
    for line in tutorial()[1:]:
        answer = reader.run(line)
        assert answer is not None
        request = answer.request
        tenant = int(request.headers["X-Tenant-ID"])
        if request.method == "POST":
            assert answer.status_code == 201, f"{line}: {answer.text}"
            body = answer.json()
            assert f"name={body['name']}" == request.content.decode(), line
            assert body["tenant_id"] == tenant
            created.append(body)
        else:
            assert answer.status_code == 200, f"{line}: {answer.text}"
            # The README says in a comment whose users each tenant sees: exactly those.
            assert names_in(answer) == line.comment.split(", "), line
            assert {u["tenant_id"] for u in answer.json()} == {tenant}
    assert len(created) == 3 and len(reader.answers) == 5
    # Ids are numbered per tenant: Charlie is tenant 2's first user, whatever tenant 1 did.
    assert [u["id"] for u in created] == [1, 2, 1]


def test_tutorial_walkthrough_in_header_mode_gives_each_tenant_only_its_users(
    fresh_stack: Callable[..., Stack],
):
    stack = fresh_stack(gateway_env={"GATEWAY_AUTH_MODES": "header", "GATEWAY_BASE_DOMAIN": None})
    insert_tutorial_tenants(stack.database.url)
    walk_through(stack.url)


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
        insert_tutorial_tenants(database_url)
        walk_through(url)
        # Each child's output comes through, prefixed with its name (a child's line may
        # reach the runner's pipe a moment after the banner).
        for name in ("postgres", "redis", "migrate", "users", "gateway"):
            printed = lambda n=name: any(re.match(rf"{n} +\| ", ln) for ln in first.lines)  # noqa: E731
            assert wait_for(printed, within=10) is not None, name

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
        assert [p.pid for p in started if not gone(p)] == []
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

        # Stopped by SIGINT (Ctrl-C in a terminal) as by SIGTERM: everything it started goes.
        started = second.descendants()
        second.popen.send_signal(signal.SIGINT)
        assert second.popen.wait(timeout=10) == 0
        assert [p.pid for p in started if not gone(p)] == []
        assert "kit: SIGINT: stopping" in second.lines
    finally:
        second.close()


def test_make_run_with_given_database_and_redis_starts_neither(
    postgres_server: PgServer, kit_workdir: Path, database: Database
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
        # Roles are cluster-wide: make run gave them passwords of its own, which would lock
        # the session's database fixtures out of the roles for the rest of the run.
        reset_role_passwords(postgres_server, database)
    assert not (kit_workdir / "make-run-given" / "postgres").exists()
