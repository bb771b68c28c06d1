"""Fixtures of the compose suite; these tests exist only under `make test-compose`."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from compose_stack import ENV_FILE, ENV_PROJECT, ComposeStack

HERE = Path(__file__).resolve().parent


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """Collect nothing here unless pytest runs with this folder's own pytest.ini.

    Plain `make test` reaches this folder through the project's testpaths; the compose
    stack is not running then, and these tests must be neither run nor reported skipped.
    """
    if config.inipath is None or config.inipath.resolve() != HERE / "pytest.ini":
        return True
    return None


@pytest.fixture(scope="session")
def stack() -> ComposeStack:
    if not {ENV_PROJECT, ENV_FILE} <= os.environ.keys():
        pytest.fail(
            f"no compose stack: run `make test-compose`, or set {ENV_PROJECT} and {ENV_FILE} "
            "to a stack started with tests/compose/compose.test.yml and the scale profile"
        )
    return ComposeStack.from_environment()


@pytest.fixture(scope="session")
def admin_token(stack: ComposeStack) -> str:
    return stack.settings["ADMIN_TOKEN"]


@pytest.fixture(scope="session")
def gateway_replica_urls(stack: ComposeStack) -> list[str]:
    """One URL per gateway replica of the scale profile, each reached directly."""
    count = len(stack.containers("gateway-replica"))
    assert count >= 2, "the scale profile runs at least two gateway replicas"
    return [stack.url("gateway-replica", 8000, index=i) for i in range(1, count + 1)]


@pytest.fixture
def replica_admins(
    gateway_replica_urls: list[str], admin_token: str
) -> Iterator[list[httpx.Client]]:
    """An admin client on each gateway replica."""
    clients = [
        httpx.Client(base_url=url, headers={"Authorization": f"Bearer {admin_token}"}, timeout=10)
        for url in gateway_replica_urls
    ]
    yield clients
    for client in clients:
        client.close()
