"""Database-per-tenant placement (issue 11) through the gateway: routing, isolation, fencing."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg2
import pytest
from placed_stack import DEDICATED, PlacedStack, placed_stack, rows

from gateway.tests.factories import bearer, unique_name
from kit.procs import ROOT, child_env
from kit.servers import PgServer
from kit.stacks import Secrets
from services.tenancy.signing import sign_headers


@pytest.fixture(scope="module")
def stack(postgres_server: PgServer, secrets: Secrets, kit_workdir: Path) -> Iterator[PlacedStack]:
    with placed_stack(postgres_server, secrets, kit_workdir, label="placement") as placed:
        yield placed


@pytest.fixture(scope="module")
def admin(stack: PlacedStack) -> Iterator[httpx.Client]:
    with stack.admin_client() as client:
        yield client


def make_tenant(admin: httpx.Client, placement: str | None) -> dict[str, Any]:
    body: dict[str, Any] = {"name": unique_name()}
    if placement is not None:
        body["placement"] = placement
    response = admin.post("/admin/tenants", json=body)
    assert response.status_code == 201, response.text
    return response.json()


def add_users(stack: PlacedStack, tenant: dict[str, Any], count: int) -> list[int]:
    ids = []
    with httpx.Client(
        base_url=stack.gateway.url, headers=bearer(tenant["api_key"]), timeout=10
    ) as client:
        for n in range(count):
            made = client.post("/users", json={"name": f"{tenant['slug']} {n}"})
            assert made.status_code == 201, made.text
            ids.append(made.json()["id"])
    return ids


def listed(stack: PlacedStack, tenant: dict[str, Any]) -> list[dict[str, Any]]:
    response = httpx.get(
        f"{stack.gateway.url}/users?limit=500", headers=bearer(tenant["api_key"]), timeout=10
    )
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def tenant_ids_in(stack: PlacedStack, placement: str) -> set[int]:
    """Whose users the placement's database holds (as the superuser: no RLS)."""
    found = rows(stack.url_of(placement), "SELECT DISTINCT tenant_id FROM users")
    return {int(r[0]) for r in found}  # type: ignore[call-overload]


def test_tenants_are_served_from_their_own_placement_and_stored_only_there(
    stack: PlacedStack, admin: httpx.Client
) -> None:
    shared = make_tenant(admin, None)
    dedicated = make_tenant(admin, DEDICATED)
    assert shared["placement"] == "shared" and dedicated["placement"] == DEDICATED
    add_users(stack, shared, 3)
    add_users(stack, dedicated, 4)
    # Per-tenant ids in each placement, as in shared: 1, 2, 3...
    assert [u["id"] for u in listed(stack, dedicated)] == [1, 2, 3, 4]
    assert {u["tenant_id"] for u in listed(stack, shared)} == {shared["id"]}
    assert dedicated["id"] in tenant_ids_in(stack, DEDICATED)
    assert dedicated["id"] not in tenant_ids_in(stack, "shared")
    assert shared["id"] in tenant_ids_in(stack, "shared")
    assert shared["id"] not in tenant_ids_in(stack, DEDICATED)
    fetched = admin.get(f"/admin/tenants/{dedicated['id']}")
    assert fetched.json()["placement"] == DEDICATED


def test_a_dedicated_database_holds_tenant_tables_and_only_its_tenants_ids(
    stack: PlacedStack, admin: httpx.Client
) -> None:
    dedicated = make_tenant(admin, DEDICATED)
    shared = make_tenant(admin, "shared")
    tables = {
        str(r[0])
        for r in rows(
            stack.dedicated_url,
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'",
        )
    }
    assert tables == {
        "users",
        "tenant_row_ids",
        "tenants",
        "alembic_version",
        "tenant_move_marks",
        "tenant_move_changes",
    }
    # The directory stays in shared: only the ids the foreign keys need, no names, no keys.
    columns = rows(
        stack.dedicated_url,
        "SELECT column_name FROM information_schema.columns WHERE table_name = 'tenants'",
    )
    assert columns == [("id",)]
    ids = {int(r[0]) for r in rows(stack.dedicated_url, "SELECT id FROM tenants")}  # type: ignore[call-overload]
    assert dedicated["id"] in ids and shared["id"] not in ids
    # The same revision as shared: one history, brought to head everywhere.
    version = "SELECT version_num FROM alembic_version"
    assert rows(stack.dedicated_url, version) == rows(stack.shared.url, version)


def test_tenants_in_one_dedicated_placement_do_not_see_each_other(
    stack: PlacedStack, admin: httpx.Client
) -> None:
    first, second = make_tenant(admin, DEDICATED), make_tenant(admin, DEDICATED)
    first_ids = add_users(stack, first, 2)
    add_users(stack, second, 2)
    assert {u["tenant_id"] for u in listed(stack, first)} == {first["id"]}
    assert {u["tenant_id"] for u in listed(stack, second)} == {second["id"]}
    # The same per-tenant id names a different row for each tenant.
    one = httpx.get(
        f"{stack.gateway.url}/users/{first_ids[0]}", headers=bearer(second["api_key"]), timeout=10
    )
    assert one.status_code == 200 and one.json()["tenant_id"] == second["id"]
    gone = httpx.get(
        f"{stack.gateway.url}/users/{first_ids[-1] + 100}",
        headers=bearer(second["api_key"]),
        timeout=10,
    )
    assert gone.status_code == 404


def _visible(url: str, tenant_id: int | None) -> set[int]:
    """The tenant ids the services' role sees in users with app.tenant_id set so."""
    conn = psycopg2.connect(url)
    try:
        with conn, conn.cursor() as cur:
            if tenant_id is not None:
                cur.execute(f"SET LOCAL app.tenant_id = '{int(tenant_id)}'")
            cur.execute("SELECT DISTINCT tenant_id FROM users")
            return {int(r[0]) for r in cur.fetchall()}
    finally:
        conn.close()


def test_row_level_security_and_roles_hold_in_every_placement(
    stack: PlacedStack, admin: httpx.Client
) -> None:
    shared, first, second = (make_tenant(admin, p) for p in ("shared", DEDICATED, DEDICATED))
    for tenant in (shared, first, second):
        add_users(stack, tenant, 1)
    dedicated_app = stack.app_url_of(DEDICATED)
    shared_app = stack.app_url_of("shared")
    # By RLS: the services' role sees its tenant's rows and no one else's, in either database.
    assert _visible(dedicated_app, first["id"]) == {first["id"]}
    assert _visible(dedicated_app, None) == set()
    assert _visible(dedicated_app, shared["id"]) == set()
    assert _visible(shared_app, first["id"]) == set()
    assert _visible(shared_app, shared["id"]) == {shared["id"]}
    # By role: in a dedicated placement the services' role reads no directory, and the
    # gateway's role no tenant table.
    with pytest.raises(psycopg2.errors.InsufficientPrivilege):
        rows(dedicated_app, "SELECT id FROM tenants")
    with pytest.raises(psycopg2.errors.InsufficientPrivilege):
        rows(stack.gateway_url_of(DEDICATED), "SELECT tenant_id FROM users")


def test_an_unknown_placement_is_refused_with_422(admin: httpx.Client) -> None:
    response = admin.post("/admin/tenants", json={"name": unique_name(), "placement": "nowhere"})
    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert error["loc"] == ["body", "placement"] and "unknown placement 'nowhere'" in error["msg"]
    malformed = admin.post("/admin/tenants", json={"name": unique_name(), "placement": "No!"})
    assert malformed.status_code == 422


def _signed_get(stack: PlacedStack, tenant_id: int, extra: dict[str, str | int]) -> httpx.Response:
    headers = sign_headers(
        stack.secrets.signing_secret,
        destination="/users",
        tenant_id=tenant_id,
        request_id=unique_name("req").replace(" ", "-"),
        method="GET",
        target="/users",
        extra=extra,
    )
    return httpx.get(f"{stack.users.url}/users", headers=headers, timeout=10)


def test_a_context_older_than_the_tenants_placement_epoch_is_refused(
    stack: PlacedStack, admin: httpx.Client
) -> None:
    tenant = make_tenant(admin, DEDICATED)
    add_users(stack, tenant, 1)
    # As a move would: the epoch grows (here by hand), then every replica is told.
    rows(
        stack.shared.url,
        "UPDATE tenants SET placement_epoch = 3 WHERE id = %s RETURNING id",
        tenant["id"],
    )
    patched = admin.patch(f"/admin/tenants/{tenant['id']}", json={"rate_limit_per_second": 500})
    assert patched.status_code == 200
    # Through the gateway: the new epoch is signed and served.
    assert len(listed(stack, tenant)) == 1
    # A gateway replica still holding epoch 2 (its signature is genuine) is refused.
    stale = _signed_get(stack, tenant["id"], {"placement": DEDICATED, "placement_epoch": 2})
    assert stale.status_code == 503, stale.text
    assert stale.json()["detail"] == "tenant placement changed; retry"
    assert stale.headers["retry-after"] == "1"
    current = _signed_get(stack, tenant["id"], {"placement": DEDICATED, "placement_epoch": 3})
    assert current.status_code == 200 and len(current.json()) == 1
    # Other tenants, never moved, are not fenced by it.
    other = make_tenant(admin, None)
    assert _signed_get(stack, other["id"], {}).status_code == 200


def test_a_placement_the_service_does_not_know_is_refused(stack: PlacedStack) -> None:
    refused = _signed_get(stack, 1, {"placement": "elsewhere", "placement_epoch": 1})
    assert refused.status_code == 503
    assert refused.json()["detail"] == "placement not configured"


def test_the_cli_places_a_tenant_and_refuses_an_unknown_placement(stack: PlacedStack) -> None:
    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "gateway.cli", "tenants", "create", unique_name("cli"), *args],
            env=child_env(
                {"DATABASE_URL": stack.shared.url, "TENANT_DATABASES": stack.tenant_databases}
            ),
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    created = cli("--placement", DEDICATED)
    assert created.returncode == 0, created.stderr
    tenant = json.loads(created.stdout)
    assert tenant["placement"] == DEDICATED
    add_users(stack, tenant, 1)
    assert tenant["id"] in tenant_ids_in(stack, DEDICATED)
    refused = cli("--placement", "nowhere")
    assert refused.returncode == 1
    assert refused.stderr.strip() == "cli: unknown placement 'nowhere' (known: shared, dedicated)"
