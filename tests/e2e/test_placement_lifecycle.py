"""Purge, export and import of tenants in a dedicated placement (issue 13 x issue 11).

A stack with `shared` and `dedicated` databases (placed_stack); rows are counted as the
superuser of each database, so RLS hides nothing from the witness.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg2
import pytest
from placed_stack import DEDICATED, PlacedStack, placed_stack, rows

from gateway import lifecycle
from gateway.tests.factories import bearer, unique_name
from kit.procs import ROOT, child_env
from kit.servers import PgServer
from kit.stacks import Secrets


@pytest.fixture(scope="module")
def stack(postgres_server: PgServer, secrets: Secrets, kit_workdir: Path) -> Iterator[PlacedStack]:
    with placed_stack(postgres_server, secrets, kit_workdir, label="placed-life") as placed:
        yield placed


@pytest.fixture(scope="module")
def admin(stack: PlacedStack) -> Iterator[httpx.Client]:
    with stack.admin_client() as client:
        yield client


def make_tenant(admin: httpx.Client, placement: str) -> dict[str, Any]:
    response = admin.post("/admin/tenants", json={"name": unique_name(), "placement": placement})
    assert response.status_code == 201, response.text
    return response.json()


def add_users(stack: PlacedStack, key: str, count: int, label: str = "u") -> None:
    with httpx.Client(base_url=stack.gateway.url, headers=bearer(key), timeout=10) as client:
        for n in range(count):
            body = {"name": f"{label} {n}", "email": f"{label}{n}@example.com"}
            made = client.post("/users", json=body)
            assert made.status_code == 201, made.text


def listed(stack: PlacedStack, key: str) -> list[dict[str, Any]]:
    response = httpx.get(f"{stack.gateway.url}/users?limit=500", headers=bearer(key), timeout=10)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def users_in(stack: PlacedStack, placement: str, tenant_id: int) -> int:
    """The tenant's users rows in `placement`'s database, counted as its superuser."""
    found = rows(
        stack.url_of(placement), "SELECT count(*) FROM users WHERE tenant_id = %s", tenant_id
    )
    return int(found[0][0])  # type: ignore[call-overload]


def certificate_key(secrets: Secrets) -> bytes:
    return hmac.new(
        secrets.admin_token.encode(), b"tenantkit-deletion-certificate", hashlib.sha256
    ).digest()


def users_file(archive: bytes) -> list[dict[str, Any]]:
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
        handle = tar.extractfile("public.users.jsonl")
        assert handle is not None
        return [json.loads(line) for line in handle.read().splitlines()]


def test_purging_a_dedicated_tenant_empties_its_database_and_certifies_it(
    stack: PlacedStack, admin: httpx.Client, secrets: Secrets
) -> None:
    gone, neighbour = make_tenant(admin, DEDICATED), make_tenant(admin, DEDICATED)
    add_users(stack, gone["api_key"], 3)
    add_users(stack, neighbour["api_key"], 2)
    assert users_in(stack, DEDICATED, gone["id"]) == 3

    purged = admin.delete(f"/admin/tenants/{gone['id']}", params={"purge": "true"})
    assert purged.status_code == 204, purged.text
    assert users_in(stack, DEDICATED, gone["id"]) == 0
    # Its parent row (and with it its id counters) is gone from the dedicated database too.
    parent = rows(stack.dedicated_url, "SELECT 1 FROM tenants WHERE id = %s", gone["id"])
    assert parent == []
    assert users_in(stack, DEDICATED, neighbour["id"]) == 2
    assert len(listed(stack, neighbour["api_key"])) == 2

    cert = admin.get(f"/admin/tenants/{gone['id']}/deletion-certificate").json()
    assert cert["placement"] == DEDICATED
    assert cert["tables"]["public.users"] == {"before": 3, "after": 0}
    assert cert["other_placements"] == {}
    # The WAL position is the dedicated database's, which held the rows: not past its own.
    here = rows(stack.dedicated_url, "SELECT pg_current_wal_lsn() >= %s::pg_lsn", cert["wal_lsn"])
    assert here == [(True,)]
    assert lifecycle.verify(cert, certificate_key(secrets))


def test_a_purge_also_clears_what_a_move_left_in_another_placement(
    stack: PlacedStack, admin: httpx.Client, secrets: Secrets
) -> None:
    tenant = make_tenant(admin, DEDICATED)
    add_users(stack, tenant["api_key"], 2)
    # What a move whose source cleanup failed leaves: rows in shared, which stays frozen for
    # the tenant (its writes refused but the mover's).
    conn = psycopg2.connect(stack.shared.url)
    try:
        with conn, conn.cursor() as cur:
            for n in range(4):
                cur.execute(
                    "INSERT INTO users (tenant_id, name) VALUES (%s, %s)",
                    (tenant["id"], f"left {n}"),
                )
            cur.execute(
                "INSERT INTO tenant_move_marks (tenant_id, state) VALUES (%s, 'frozen')",
                (tenant["id"],),
            )
    finally:
        conn.close()

    purged = admin.delete(f"/admin/tenants/{tenant['id']}", params={"purge": "true"})
    assert purged.status_code == 204, purged.text
    assert users_in(stack, DEDICATED, tenant["id"]) == 0
    assert users_in(stack, "shared", tenant["id"]) == 0
    cert = admin.get(f"/admin/tenants/{tenant['id']}/deletion-certificate").json()
    assert cert["placement"] == DEDICATED
    assert cert["tables"]["public.users"] == {"before": 2, "after": 0}
    left = cert["other_placements"]["shared"]
    assert left["tables"]["public.users"] == {"before": 4, "after": 0} and left["wal_lsn"]
    assert lifecycle.verify(cert, certificate_key(secrets))


def test_export_of_a_dedicated_tenant_holds_its_rows_and_imports_into_dedicated(
    stack: PlacedStack, admin: httpx.Client
) -> None:
    tenant = make_tenant(admin, DEDICATED)
    add_users(stack, tenant["api_key"], 5)
    exported = admin.get(f"/admin/tenants/{tenant['id']}/export")
    assert exported.status_code == 200, exported.text
    archived = users_file(exported.content)
    assert [u["id"] for u in archived] == [1, 2, 3, 4, 5]
    assert [u["name"] for u in archived] == [u["name"] for u in listed(stack, tenant["api_key"])]

    imported = admin.post(
        "/admin/tenants/import",
        params={
            "name": unique_name(),
            "slug": unique_name("imp").replace(" ", "-").lower()[:60],
            "placement": DEDICATED,
        },
        content=exported.content,
    )
    assert imported.status_code == 201, imported.text
    copy = imported.json()
    assert copy["placement"] == DEDICATED
    assert users_in(stack, DEDICATED, copy["id"]) == 5
    assert users_in(stack, "shared", copy["id"]) == 0
    served = listed(stack, copy["api_key"])
    assert [(u["id"], u["name"]) for u in served] == [(u["id"], u["name"]) for u in archived]
    # Export of the copy (read from dedicated) gives the same rows.
    again = admin.get(f"/admin/tenants/{copy['id']}/export")
    assert users_file(again.content) == archived
    # Its id counter in the dedicated database continues after the imported ids.
    add_users(stack, copy["api_key"], 1, label="later")
    assert max(u["id"] for u in listed(stack, copy["api_key"])) == 6


def test_import_into_an_unknown_placement_is_422_and_writes_nothing(
    stack: PlacedStack, admin: httpx.Client
) -> None:
    tenant = make_tenant(admin, "shared")
    add_users(stack, tenant["api_key"], 1)
    archive = admin.get(f"/admin/tenants/{tenant['id']}/export").content
    count = "SELECT count(*) FROM tenants"
    before = rows(stack.shared.url, count)
    refused = admin.post(
        "/admin/tenants/import",
        params={"name": unique_name(), "placement": "nowhere"},
        content=archive,
    )
    assert refused.status_code == 422
    [error] = refused.json()["detail"]
    assert error["loc"] == ["query", "placement"] and "unknown placement" in error["msg"]
    assert rows(stack.shared.url, count) == before


def test_purge_and_export_wait_while_a_move_runs(stack: PlacedStack, admin: httpx.Client) -> None:
    tenant = make_tenant(admin, "shared")
    add_users(stack, tenant["api_key"], 2)
    # A move under way, as tenant_moves records one (the mover's own rows are not needed:
    # the refusal reads the record).
    running = rows(
        stack.shared.url,
        "INSERT INTO tenant_moves (tenant_id, from_placement, to_placement, state) "
        "VALUES (%s, 'shared', %s, 'copying') RETURNING id",
        tenant["id"],
        DEDICATED,
    )
    try:
        exported = admin.get(f"/admin/tenants/{tenant['id']}/export")
        assert exported.status_code == 409 and "move" in exported.json()["detail"]
        purged = admin.delete(f"/admin/tenants/{tenant['id']}", params={"purge": "true"})
        assert purged.status_code == 409 and "move" in purged.json()["detail"]
        # Refused before anything changed: still active, rows kept.
        assert admin.get(f"/admin/tenants/{tenant['id']}").json()["status"] == "active"
        assert users_in(stack, "shared", tenant["id"]) == 2
    finally:
        rows(
            stack.shared.url,
            "UPDATE tenant_moves SET state = 'failed', finished_at = now() WHERE id = %s",
            running[0][0],
        )
    assert admin.get(f"/admin/tenants/{tenant['id']}/export").status_code == 200
    purged = admin.delete(f"/admin/tenants/{tenant['id']}", params={"purge": "true"})
    assert purged.status_code == 204
    assert users_in(stack, "shared", tenant["id"]) == 0


def test_the_cli_exports_imports_into_and_purges_a_dedicated_tenant(
    stack: PlacedStack, admin: httpx.Client, tmp_path: Path
) -> None:
    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        env = {
            "DATABASE_URL": stack.shared.url,
            "TENANT_DATABASES": stack.tenant_databases,
            "ADMIN_TOKEN": stack.secrets.admin_token,
            "REDIS_URL": stack.redis_url,
        }
        return subprocess.run(
            [sys.executable, "-m", "gateway.cli", "tenants", *args],
            env=child_env(env),
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    tenant = make_tenant(admin, DEDICATED)
    add_users(stack, tenant["api_key"], 3)
    archive = tmp_path / "dedicated.tar.gz"
    exported = cli("export", str(tenant["id"]), "-o", str(archive))
    assert exported.returncode == 0, exported.stderr
    assert [u["id"] for u in users_file(archive.read_bytes())] == [1, 2, 3]
    imported = cli(
        "import",
        str(archive),
        "--name",
        unique_name(),
        "--slug",
        "cli-placed",
        "--placement",
        DEDICATED,
    )
    assert imported.returncode == 0, imported.stderr
    copy = json.loads(imported.stdout)
    assert copy["placement"] == DEDICATED and users_in(stack, DEDICATED, copy["id"]) == 3
    refused = cli("import", str(archive), "--name", unique_name(), "--placement", "nowhere")
    assert refused.returncode == 1 and "unknown placement 'nowhere'" in refused.stderr
    purged = cli("purge", str(copy["id"]))
    assert purged.returncode == 0, purged.stderr
    cert = json.loads(purged.stdout)
    assert cert["placement"] == DEDICATED
    assert cert["tables"]["public.users"] == {"before": 3, "after": 0}
    assert users_in(stack, DEDICATED, copy["id"]) == 0


def test_a_placement_this_gateway_cannot_reach_is_503_and_claims_nothing(
    stack: PlacedStack, admin: httpx.Client
) -> None:
    tenant = make_tenant(admin, "shared")
    add_users(stack, tenant["api_key"], 1)
    # A directory naming a placement this gateway was not given (TENANT_DATABASES differs).
    rows(stack.shared.url, "UPDATE tenants SET placement = 'elsewhere' WHERE id = %s", tenant["id"])
    try:
        exported = admin.get(f"/admin/tenants/{tenant['id']}/export")
        assert exported.status_code == 503 and "elsewhere" in exported.json()["detail"]
        purged = admin.delete(f"/admin/tenants/{tenant['id']}", params={"purge": "true"})
        assert purged.status_code == 503 and "elsewhere" in purged.json()["detail"]
        # No purge began: it can still be restored, with its rows.
        assert admin.post(f"/admin/tenants/{tenant['id']}/restore").status_code == 200
        assert users_in(stack, "shared", tenant["id"]) == 1
    finally:
        rows(
            stack.shared.url, "UPDATE tenants SET placement = 'shared' WHERE id = %s", tenant["id"]
        )


def test_a_tenant_moved_out_and_back_is_exported_and_purged_where_it_lives(
    stack: PlacedStack, admin: httpx.Client, secrets: Secrets
) -> None:
    tenant = make_tenant(admin, "shared")
    add_users(stack, tenant["api_key"], 3)
    for to in (DEDICATED, "shared"):
        started = admin.post(f"/admin/tenants/{tenant['id']}/move", json={"to": to})
        assert started.status_code == 202, started.text
        deadline = time.monotonic() + 120
        while (state := admin.get(f"/admin/tenants/{tenant['id']}/move").json())["state"] not in (
            "done",
            "failed",
        ):
            assert time.monotonic() < deadline, state
            time.sleep(0.05)
        assert state["state"] == "done", state
        exported = admin.get(f"/admin/tenants/{tenant['id']}/export")
        assert exported.status_code == 200 and len(users_file(exported.content)) == 3
    # Back in shared; dedicated keeps its parent row and a frozen mark for it.
    assert rows(stack.dedicated_url, "SELECT 1 FROM tenants WHERE id = %s", tenant["id"])
    purged = admin.delete(f"/admin/tenants/{tenant['id']}", params={"purge": "true"})
    assert purged.status_code == 204, purged.text
    assert users_in(stack, "shared", tenant["id"]) == 0
    assert users_in(stack, DEDICATED, tenant["id"]) == 0
    assert rows(stack.dedicated_url, "SELECT 1 FROM tenants WHERE id = %s", tenant["id"]) == []
    marks = "SELECT 1 FROM tenant_move_marks WHERE tenant_id = %s"
    assert rows(stack.dedicated_url, marks, tenant["id"]) == []
    cert = admin.get(f"/admin/tenants/{tenant['id']}/deletion-certificate").json()
    assert cert["placement"] == "shared" and cert["other_placements"] == {}
    assert cert["tables"]["public.users"] == {"before": 3, "after": 0}
    assert lifecycle.verify(cert, certificate_key(secrets))
