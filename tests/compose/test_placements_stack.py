"""docker-compose.placements.yml (`make up-placements`): a second PostgreSQL, `db-dedicated`,
holds the dedicated tenants' rows, and a tenant moves there and back through the admin API.

A project of its own beside make test-compose's stack, so that stack stays the default one.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from compose_stack import ROOT, ComposeStack, free_port

PLACEMENTS_FILES = (ROOT / "docker-compose.yml", ROOT / "docker-compose.placements.yml")
SERVERS = {"shared": "postgres", "dedicated": "db-dedicated"}


@pytest.fixture(scope="module")
def placed(stack: ComposeStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ComposeStack]:
    """The default services plus db-dedicated, under the test stack's secrets, other ports."""
    env_file = tmp_path_factory.mktemp("placements") / "compose.env"
    settings = {
        **stack.settings,
        "GATEWAY_PUBLISHED_PORT": str(free_port()),
        "GATEWAY_ADMIN_PUBLISHED_PORT": str(free_port()),
    }
    env_file.write_text("".join(f"{k}={v}\n" for k, v in settings.items()))
    placed = ComposeStack(
        project=f"{stack.project}-placements", env_file=env_file, files=PLACEMENTS_FILES
    )
    try:
        # The image is make test-compose's, already built: only layer-cache hits here.
        placed.run("up", "-d", "--build", "--wait", profiles=(), timeout=900)
        yield placed
    finally:
        placed.run(
            "down", "--volumes", "--remove-orphans", "--timeout", "10", profiles=(), check=False
        )


@pytest.fixture(scope="module")
def admin(placed: ComposeStack) -> Iterator[httpx.Client]:
    token = placed.settings["ADMIN_TOKEN"]
    with httpx.Client(
        base_url=placed.url("gateway", 9000),
        headers={"Authorization": f"Bearer {token}"},
        timeout=15,
    ) as client:
        yield client


def _users_in(placed: ComposeStack, placement: str, tenant_id: int) -> list[str]:
    """The tenant's user names in one server, read there as its superuser (no RLS)."""
    out = placed.run(
        "exec",
        "-T",
        SERVERS[placement],
        "psql",
        "-U",
        "tenantkit",
        "-d",
        "tenantkit",
        "-Atc",
        f"SELECT name FROM users WHERE tenant_id = {int(tenant_id)} ORDER BY id",
        profiles=(),
    )
    return out.splitlines()


def _tenant(admin: httpx.Client, name: str, placement: str) -> dict[str, Any]:
    made = admin.post("/admin/tenants", json={"name": name, "placement": placement})
    assert made.status_code == 201, made.text
    return made.json()  # type: ignore[no-any-return]


def _client(placed: ComposeStack, tenant: dict[str, Any]) -> httpx.Client:
    return httpx.Client(
        base_url=placed.url("gateway", 8000),
        headers={"Authorization": f"Bearer {tenant['api_key']}"},
        timeout=15,
    )


def _write(client: httpx.Client, *names: str) -> None:
    for name in names:
        made = client.post("/users", json={"name": name})
        assert made.status_code == 201, made.text


def _listed(client: httpx.Client) -> list[str]:
    listed = client.get("/users")
    assert listed.status_code == 200, listed.text
    return [u["name"] for u in listed.json()]


def _move(admin: httpx.Client, tenant_id: int, to: str) -> dict[str, Any]:
    started = admin.post(f"/admin/tenants/{tenant_id}/move", json={"to": to})
    assert started.status_code == 202, started.text
    deadline = time.monotonic() + 120
    while True:
        state = admin.get(f"/admin/tenants/{tenant_id}/move").json()
        if state["state"] in ("done", "failed"):
            assert state["state"] == "done", state
            return state  # type: ignore[no-any-return]
        assert time.monotonic() < deadline, state
        time.sleep(0.2)


def test_a_dedicated_tenants_rows_live_in_the_second_server_only(
    placed: ComposeStack, admin: httpx.Client
) -> None:
    big = _tenant(admin, "Big Co", "dedicated")
    small = _tenant(admin, "Small Co", "shared")
    assert admin.get(f"/admin/tenants/{big['id']}").json()["placement"] == "dedicated"
    with _client(placed, big) as client:
        _write(client, "ada", "grace")
        assert _listed(client) == ["ada", "grace"]
    with _client(placed, small) as client:
        _write(client, "linus")
        assert _listed(client) == ["linus"]
    assert _users_in(placed, "dedicated", big["id"]) == ["ada", "grace"]
    assert _users_in(placed, "shared", big["id"]) == []
    assert _users_in(placed, "shared", small["id"]) == ["linus"]
    assert _users_in(placed, "dedicated", small["id"]) == []


def test_a_tenant_moves_to_the_second_server_and_back(
    placed: ComposeStack, admin: httpx.Client
) -> None:
    tenant = _tenant(admin, "Mover Co", "shared")
    with _client(placed, tenant) as client:
        _write(client, "one", "two")
        assert _users_in(placed, "shared", tenant["id"]) == ["one", "two"]

        _move(admin, tenant["id"], "dedicated")
        assert _users_in(placed, "dedicated", tenant["id"]) == ["one", "two"]
        assert _users_in(placed, "shared", tenant["id"]) == []
        _write(client, "three")  # served, and written, where it lives now
        assert _listed(client) == ["one", "two", "three"]
        assert _users_in(placed, "dedicated", tenant["id"]) == ["one", "two", "three"]

        _move(admin, tenant["id"], "shared")
        assert _users_in(placed, "shared", tenant["id"]) == ["one", "two", "three"]
        assert _users_in(placed, "dedicated", tenant["id"]) == []
        assert _listed(client) == ["one", "two", "three"]
    assert admin.get(f"/admin/tenants/{tenant['id']}").json()["placement"] == "shared"


def test_the_second_server_is_on_the_internal_network_only(placed: ComposeStack) -> None:
    [row] = placed.containers("db-dedicated")
    assert not row.get("Publishers"), row  # no port of it reaches the host


def test_migrate_brought_each_server_to_head_on_a_line_of_its_own(placed: ComposeStack) -> None:
    logs = placed.run("logs", "--no-color", "--no-log-prefix", "migrate", profiles=())
    reached = sorted(re.findall(r"migrate: placement (\w+): at ", logs))
    assert reached == ["dedicated", "shared"], logs
