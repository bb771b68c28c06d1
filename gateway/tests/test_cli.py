"""`python -m gateway.cli`: operators' commands, seen by running gateways within a second."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import httpx
import redis

from gateway.tests.factories import bearer, unique_name, wait_for
from kit.procs import ServiceProcess
from kit.servers import RedisServer
from kit.testing import Database

ROOT = Path(__file__).resolve().parents[2]


def cli_env(database: Database, redis: RedisServer) -> dict[str, str]:
    """The operator's environment for `python -m gateway.cli` against these servers."""
    return {
        "PATH": "/usr/bin:/bin",
        "DATABASE_URL": database.url,
        "REDIS_URL": redis.url,
        "DELETION_CERTIFICATE_SECRET": "cli-test-certificate-secret",
    }


def cli(
    *args: str, database: Database, redis: RedisServer, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", *args],
        env=cli_env(database, redis),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_operator_lifecycle_through_the_cli(
    database: Database, redis_server: RedisServer, echo_gateway: ServiceProcess, tmp_path: Path
) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return cli(*args, database=database, redis=redis_server)

    name = unique_name("cli")
    created = run("tenants", "create", name, "--rate-limit", "50")
    assert created.returncode == 0, created.stderr
    tenant = json.loads(created.stdout)
    assert tenant["name"] == name and tenant["rate_limit_per_second"] == 50
    users = f"{echo_gateway.url}/users"

    def status(key: str) -> int:
        return httpx.get(users, headers=bearer(key)).status_code

    assert status(tenant["api_key"]) == 200
    listed = json.loads(run("tenants", "list").stdout)
    assert tenant["id"] in [t["id"] for t in listed]

    assert run("tenants", "suspend", str(tenant["id"])).returncode == 0
    assert wait_for(lambda: status(tenant["api_key"]) == 403, within=1.0) <= 1.0
    assert run("tenants", "activate", str(tenant["id"])).returncode == 0
    assert wait_for(lambda: status(tenant["api_key"]) == 200, within=1.0) <= 1.0

    second = json.loads(run("keys", "create", str(tenant["id"])).stdout)
    assert status(second["api_key"]) == 200
    assert run("keys", "revoke", str(tenant["id"]), str(second["id"])).returncode == 0
    assert wait_for(lambda: status(second["api_key"]) == 401, within=1.0) <= 1.0

    assert run("tenants", "delete", str(tenant["id"])).returncode == 0
    assert wait_for(lambda: status(tenant["api_key"]) == 404, within=1.0) <= 1.0
    restored = run("tenants", "restore", str(tenant["id"]))
    assert restored.returncode == 0 and json.loads(restored.stdout)["status"] == "active"
    assert wait_for(lambda: status(tenant["api_key"]) == 200, within=1.0) <= 1.0
    assert run("tenants", "restore", str(tenant["id"])).returncode == 1  # not pending

    archive = tmp_path / "tenant.tar.gz"
    exported = run("tenants", "export", str(tenant["id"]), "-o", str(archive))
    assert exported.returncode == 0 and "rows exported" in exported.stderr, exported.stderr
    copy = run("tenants", "import", str(archive), "--name", f"{name} copy", "--slug", "cli-copy")
    assert copy.returncode == 0, copy.stderr
    assert status(json.loads(copy.stdout)["api_key"]) == 200

    purged = run("tenants", "delete", str(tenant["id"]), "--purge")
    assert purged.returncode == 0 and "rows deleted" in purged.stderr, purged.stderr
    assert json.loads(purged.stdout)["tenant_id"] == tenant["id"]
    assert wait_for(lambda: status(tenant["api_key"]) == 401, within=1.0) <= 1.0
    assert run("tenants", "purge", str(json.loads(copy.stdout)["id"])).returncode == 0


def test_cli_refusals_exit_non_zero_with_a_reason(
    database: Database, redis_server: RedisServer
) -> None:
    name = unique_name("cli")
    assert cli("tenants", "create", name, database=database, redis=redis_server).returncode == 0
    duplicate = cli("tenants", "create", name, database=database, redis=redis_server)
    assert duplicate.returncode == 1 and "already exists" in duplicate.stderr
    missing = cli("tenants", "suspend", str(2**62), database=database, redis=redis_server)
    assert missing.returncode == 1 and "no such tenant" in missing.stderr
    empty = cli("tenants", "create", "", database=database, redis=redis_server)
    assert empty.returncode == 2


def test_cli_without_a_database_url_names_the_variable() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "tenants", "list"],
        env={"PATH": "/usr/bin:/bin"},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "cli: invalid setting GATEWAY_DATABASE_URL: required (or DATABASE_URL to derive it from)"
    )


def test_cli_repeats_its_invalidation_so_a_racing_write_back_is_dropped_too(
    database: Database, redis_server: RedisServer, echo_gateway: ServiceProcess
) -> None:
    created = cli("tenants", "create", unique_name("cli"), database=database, redis=redis_server)
    tenant = json.loads(created.stdout)
    users, headers = f"{echo_gateway.url}/users", bearer(tenant["api_key"])
    time.sleep(0.8)  # past the creation's own second pass
    assert httpx.get(users, headers=headers).status_code == 200
    store = redis.Redis.from_url(redis_server.url, socket_timeout=5, decode_responses=True)
    entry = f"tk:tenant:id:{tenant['id']}"
    before = store.get(entry)
    assert before is not None  # what a replica that read PostgreSQL before the commit holds

    pubsub = store.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe("tk:invalidate")
    suspend = subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", "tenants", "suspend", str(tenant["id"])],
        env={"PATH": "/usr/bin:/bin", "DATABASE_URL": database.url, "REDIS_URL": redis_server.url},
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
    )
    messages: list[float] = []
    deadline = time.monotonic() + 20
    while len(messages) < 2 and time.monotonic() < deadline:
        message = pubsub.get_message(timeout=1.0)
        if message is None or message["data"] != f"tenant:{tenant['id']}":
            continue
        messages.append(time.monotonic())
        if len(messages) == 1:
            # A replica that read the old row writes it back just after the first delete.
            store.set(entry, before, px=20_000)
    assert suspend.wait(20) == 0
    pubsub.close()
    assert len(messages) == 2 and messages[1] - messages[0] >= 0.4, messages
    assert store.get(entry) is None
    assert wait_for(lambda: httpx.get(users, headers=headers).status_code == 403, within=1.0)
    store.close()


def test_cli_sets_and_resets_a_tenants_limits(
    database: Database, redis_server: RedisServer, echo_gateway: ServiceProcess
) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return cli(*args, database=database, redis=redis_server)

    created = run("tenants", "create", unique_name("limits"), "--max-in-flight", "3")
    assert created.returncode == 0, created.stderr
    tenant = json.loads(created.stdout)
    assert tenant["max_in_flight"] == 3 and tenant["statement_timeout_ms"] is None
    tid = str(tenant["id"])
    updated = run(
        "tenants", "update", tid, "--max-in-flight", "default", "--statement-timeout-ms", "900"
    )
    assert updated.returncode == 0, updated.stderr
    body = json.loads(updated.stdout)
    assert body["max_in_flight"] is None and body["statement_timeout_ms"] == 900
    refused = run("tenants", "update", tid, "--statement-timeout-ms", "0")
    assert refused.returncode == 2 and "statement_timeout_ms" in refused.stderr
