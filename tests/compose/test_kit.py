"""The compose kit as users meet it: images, published ports, health, secrets, the users
service's isolation on the internal network."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from compose_stack import ROOT, ComposeStack, read_env_file

IMAGE = "tenantkit:latest"
REQUIRED_SECRETS = (
    "POSTGRES_PASSWORD",
    "OWNER_DB_PASSWORD",
    "GATEWAY_DB_PASSWORD",
    "APP_DB_PASSWORD",
    "ADMIN_TOKEN",
    "INTERNAL_SIGNING_SECRET",
    "REDIS_GATEWAY_PASSWORD",
    "REDIS_SERVICES_PASSWORD",
)


def _docker(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=120)


def _compose_config(*args: str, secrets: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`docker compose config` of the real file with exactly these secrets (no .env read)."""
    env = {k: v for k, v in os.environ.items() if k not in REQUIRED_SECRETS}
    return subprocess.run(
        [
            "docker",
            "compose",
            "--env-file",
            os.devnull,
            "--project-name",
            "configcheck",
            *args,
            "config",
            "--format",
            "json",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={**env, **secrets},
    )


def test_app_image_runs_as_an_unprivileged_user_without_compilers() -> None:
    probe = _docker(
        "run",
        "--rm",
        "--entrypoint",
        "sh",
        IMAGE,
        "-c",
        "id -u; for tool in gcc cc c++ make; do command -v $tool || true; done",
    )
    assert probe.returncode == 0, probe.stderr
    uid, *tools = probe.stdout.split()
    assert uid != "0"
    assert tools == []


def test_every_long_running_service_reports_healthy(stack: ComposeStack) -> None:
    rows = stack.containers()
    running = {row["Service"]: row for row in rows if row["State"] == "running"}
    expected = {
        "postgres",
        "redis",
        "users",
        "gateway",
        "pgbouncer",
        "users-replica",
        "gateway-replica",
        "users-lb",
        "lb",
    }
    assert expected <= set(running)
    unhealthy = {
        row["Name"]: row["Health"]
        for row in rows
        if row["State"] == "running" and row["Health"] != "healthy"
    }
    assert not unhealthy


def test_migrate_ran_once_and_exited_cleanly(stack: ComposeStack) -> None:
    rows = [
        row
        for row in stack.run(
            "ps", "--all", "--format", "{{.Service}} {{.State}} {{.ExitCode}}"
        ).splitlines()
        if row.startswith("migrate ")
    ]
    assert rows == ["migrate exited 0"]


def test_only_the_gateway_and_its_load_balancer_publish_ports() -> None:
    """Read from the real compose file (without the test override) as `make up` uses it."""
    config = _compose_config(
        "--profile",
        "scale",
        "--profile",
        "loadtest",
        secrets={name: "x" * 32 for name in REQUIRED_SECRETS},
    )
    assert config.returncode == 0, config.stderr
    services = json.loads(config.stdout)["services"]
    published = {name for name, svc in services.items() if svc.get("ports")}
    assert published == {"gateway", "lb"}
    # Everything behind the gateway lives only on `backend`, which Docker keeps internal
    # (no outbound traffic, no port publishing).
    for name in ("users", "users-replica", "postgres", "redis", "pgbouncer", "users-lb"):
        assert set(services[name]["networks"]) == {"backend"}, name
    assert json.loads(config.stdout)["networks"]["backend"]["internal"] is True


@pytest.mark.parametrize("missing", REQUIRED_SECRETS)
def test_a_missing_secret_stops_compose_naming_the_variable(missing: str) -> None:
    config = _compose_config(
        secrets={name: "x" * 32 for name in REQUIRED_SECRETS if name != missing}
    )
    assert config.returncode != 0
    assert missing in config.stderr


def test_users_service_refuses_an_unsigned_call_from_inside_the_stack(stack: ComposeStack) -> None:
    """Even a container on the internal network gets 401 without the gateway's signature."""
    script = (
        "import urllib.request, urllib.error\n"
        "req = urllib.request.Request('http://users:8001/users', headers={'X-Tenant-ID': '1'})\n"
        "try:\n    urllib.request.urlopen(req, timeout=5); print(200)\n"
        "except urllib.error.HTTPError as e:\n    print(e.code)\n"
    )
    out = stack.run("exec", "-T", "gateway", "python", "-c", script)
    assert out.strip() == "401"


def test_make_up_creates_env_with_every_required_secret_once(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    first = subprocess.run(
        ["sh", str(ROOT / "deploy" / "compose-env.sh"), str(env_file)],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert "created" in first.stdout
    values = read_env_file(env_file)
    for name in REQUIRED_SECRETS:
        assert len(values[name]) >= 32, name
    # SPEC §3: JWT mode stays off unless the user sets JWT_SECRET; none is generated.
    assert "JWT_SECRET" not in values
    assert len(set(values.values())) == len(values)  # each secret drawn on its own
    assert env_file.stat().st_mode & 0o077 == 0  # readable by its owner only

    again = subprocess.run(
        ["sh", str(ROOT / "deploy" / "compose-env.sh"), str(env_file)],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert again.stdout == ""
    assert read_env_file(env_file) == values  # an existing .env is never overwritten
