"""Gateway test fixtures: an echo upstream that verifies signatures, and gateways in front of it."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import httpx
import pytest

from kit.procs import ServiceProcess, start_service
from kit.servers import RedisServer
from kit.testing import Database, Secrets, gateway_env

StartGateway = Callable[..., ServiceProcess]


@pytest.fixture(scope="session")
def echo_upstream(secrets: Secrets, kit_workdir: Path) -> Iterator[ServiceProcess]:
    """A real HTTP upstream that answers 401 to a bad signature and echoes the request."""
    service = start_service(
        "echo",
        env={"INTERNAL_SIGNING_SECRET": secrets.signing_secret},
        argv=[sys.executable, "-m", "gateway.tests.echo_upstream"],
        ready_path="/healthz",
        log_dir=kit_workdir / "logs",
    )
    yield service
    service.stop()


def _echo_env(
    *, database: Database, redis_url: str, secrets: Secrets, echo_url: str
) -> dict[str, str | None]:
    env = gateway_env(database=database, redis_url=redis_url, users_url=echo_url, secrets=secrets)
    env["GATEWAY_ROUTES"] = f"/users={echo_url},/echo={echo_url}"
    return env


@pytest.fixture(scope="session")
def echo_gateway(
    database: Database,
    redis_server: RedisServer,
    secrets: Secrets,
    echo_upstream: ServiceProcess,
    kit_workdir: Path,
) -> Iterator[ServiceProcess]:
    """A gateway (api_key, jwt, subdomain on example.test) routing /users and /echo to echo."""
    env = _echo_env(
        database=database, redis_url=redis_server.url, secrets=secrets, echo_url=echo_upstream.url
    )
    service = start_service("gateway", env=env, log_dir=kit_workdir / "logs")
    yield service
    service.stop()


@pytest.fixture
def start_gateway(
    database: Database,
    redis_server: RedisServer,
    secrets: Secrets,
    echo_upstream: ServiceProcess,
    kit_workdir: Path,
) -> Iterator[StartGateway]:
    """start_gateway(env={...}, ready_path=...): a gateway of this test's own, echo behind it."""
    started: list[ServiceProcess] = []

    def start(
        env: Mapping[str, str | None] | None = None, *, ready_path: str = "/readyz"
    ) -> ServiceProcess:
        base = _echo_env(
            database=database,
            redis_url=redis_server.url,
            secrets=secrets,
            echo_url=echo_upstream.url,
        )
        service = start_service(
            "gateway",
            env={**base, **(env or {})},
            ready_path=ready_path,
            log_dir=kit_workdir / "logs",
        )
        started.append(service)
        return service

    yield start
    for service in reversed(started):
        service.stop()


@pytest.fixture
def echo_client(echo_gateway: ServiceProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=echo_gateway.url, timeout=10) as client:
        yield client


@pytest.fixture
def echo_admin(echo_gateway: ServiceProcess, secrets: Secrets) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=echo_gateway.url,
        headers={"Authorization": f"Bearer {secrets.admin_token}"},
        timeout=10,
    ) as client:
        yield client
