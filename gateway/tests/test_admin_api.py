"""The admin API's contract (SPEC §4): statuses, bodies, and keys shown once."""

from __future__ import annotations

import hashlib
import socket

import httpx
import psycopg2
import pytest

from gateway.tests.factories import bearer, create_tenant, unique_name
from kit.testing import Database


def test_without_the_admin_token_everything_is_401(echo_client: httpx.Client) -> None:
    calls = [
        ("GET", "/admin/tenants"),
        ("POST", "/admin/tenants"),
        ("GET", "/admin/tenants/1"),
        ("PATCH", "/admin/tenants/1"),
        ("DELETE", "/admin/tenants/1"),
        ("POST", "/admin/tenants/1/api-keys"),
        ("DELETE", "/admin/tenants/1/api-keys/1"),
    ]
    for headers in ({}, bearer("wrong-token"), {"Authorization": "Basic YWRtaW46YWRtaW4="}):
        for method, path in calls:
            response = echo_client.request(method, path, headers=headers, json={"name": "x"})
            assert response.status_code == 401, (method, path, headers)
            assert "detail" in response.json()


def test_unauthenticated_admin_request_is_refused_before_its_body_is_read(
    echo_gateway,
) -> None:
    # Content-Length promises 50 MB that never come: reading the body would hang this.
    host, port = echo_gateway.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(
            b"POST /admin/tenants HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 50000000\r\n\r\n{"
        )
        assert sock.recv(65536).startswith(b"HTTP/1.1 401 ")


def test_tenant_api_key_is_not_an_admin_token(
    echo_client: httpx.Client, echo_admin: httpx.Client
) -> None:
    tenant = create_tenant(echo_admin)
    assert echo_client.get("/admin/tenants", headers=bearer(tenant["api_key"])).status_code == 401


def test_create_returns_the_tenant_and_its_first_key_once(
    echo_admin: httpx.Client, database: Database
) -> None:
    name = unique_name("Acme Corp")
    response = echo_admin.post("/admin/tenants", json={"name": name, "rate_limit_per_second": 7})
    assert response.status_code == 201
    body = response.json()
    assert body["name"] == name
    assert body["status"] == "active"
    assert body["rate_limit_per_second"] == 7
    assert body["slug"] == name.lower().replace(" ", "-")
    assert body["api_key"].startswith("tk_")
    # Stored only as a hash: the database holds the digest, never the key.
    with psycopg2.connect(database.url) as conn, conn.cursor() as cur:
        cur.execute("SELECT prefix, key_hash FROM api_keys WHERE tenant_id = %s", (body["id"],))
        ((prefix, key_hash),) = cur.fetchall()
    conn.close()
    assert bytes(key_hash) == hashlib.sha256(body["api_key"].encode()).digest()
    assert body["api_key"].startswith(prefix) and len(prefix) < 12
    # Shown once: nothing else ever returns it.
    again = echo_admin.get(f"/admin/tenants/{body['id']}").json()
    assert "api_key" not in again
    assert body["api_key"] not in echo_admin.get("/admin/tenants").text


def test_list_and_get(echo_admin: httpx.Client) -> None:
    tenant = create_tenant(echo_admin)
    listed = echo_admin.get("/admin/tenants")
    assert listed.status_code == 200
    assert tenant["id"] in [t["id"] for t in listed.json()]
    got = echo_admin.get(f"/admin/tenants/{tenant['id']}")
    assert got.status_code == 200
    assert got.json()["name"] == tenant["name"]


def test_unknown_ids_are_404(echo_admin: httpx.Client) -> None:
    missing = 2**62
    tenant = create_tenant(echo_admin)
    for method, path in [
        ("GET", f"/admin/tenants/{missing}"),
        ("PATCH", f"/admin/tenants/{missing}"),
        ("DELETE", f"/admin/tenants/{missing}"),
        ("POST", f"/admin/tenants/{missing}/api-keys"),
        ("DELETE", f"/admin/tenants/{missing}/api-keys/1"),
        ("DELETE", f"/admin/tenants/{tenant['id']}/api-keys/{missing}"),
    ]:
        response = echo_admin.request(method, path, json={"status": "suspended"})
        assert response.status_code == 404, (method, path, response.text)


def test_keys_cannot_be_revoked_through_another_tenant(echo_admin: httpx.Client) -> None:
    a, b = create_tenant(echo_admin), create_tenant(echo_admin)
    response = echo_admin.delete(f"/admin/tenants/{b['id']}/api-keys/{a['api_key_id']}")
    assert response.status_code == 404


def test_duplicate_name_or_slug_is_409(echo_admin: httpx.Client) -> None:
    tenant = create_tenant(echo_admin)
    assert echo_admin.post("/admin/tenants", json={"name": tenant["name"]}).status_code == 409
    clash = {"name": unique_name(), "slug": tenant["slug"]}
    assert echo_admin.post("/admin/tenants", json=clash).status_code == 409
    other = create_tenant(echo_admin)
    renamed = echo_admin.patch(f"/admin/tenants/{other['id']}", json={"name": tenant["name"]})
    assert renamed.status_code == 409


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"name": ""},
        {"name": "x" * 201},
        {"name": 5},
        {"name": "ok", "slug": "Not A Slug"},
        {"name": "ok", "slug": "-dash"},
        {"name": "ok", "rate_limit_per_second": -1},
        {"name": "ok", "rate_limit_per_second": "fast"},
        {"name": "ok", "status": "active"},
        {"name": "ok", "max_in_flight": -1},
        {"name": "ok", "statement_timeout_ms": 0},
    ],
)
def test_invalid_create_bodies_are_422(echo_admin: httpx.Client, body: dict[str, object]) -> None:
    response = echo_admin.post("/admin/tenants", json=body)
    assert response.status_code == 422
    assert "detail" in response.json()


@pytest.mark.parametrize(
    "body",
    [
        {"status": "paused"},
        {"name": None},
        {"status": None},
        {"rate_limit_per_second": -5},
        {"slug": "x"},
        {"max_in_flight": "many"},
        {"statement_timeout_ms": -100},
    ],
)
def test_invalid_patch_bodies_are_422(echo_admin: httpx.Client, body: dict[str, object]) -> None:
    tenant = create_tenant(echo_admin)
    assert echo_admin.patch(f"/admin/tenants/{tenant['id']}", json=body).status_code == 422


def test_non_json_body_is_422(echo_admin: httpx.Client) -> None:
    response = echo_admin.post(
        "/admin/tenants", content=b"name=x", headers={"Content-Type": "text/plain"}
    )
    assert response.status_code == 422


def test_patch_renames_suspends_reactivates_and_sets_the_rate_limit(
    echo_admin: httpx.Client,
) -> None:
    tenant = create_tenant(echo_admin)
    url = f"/admin/tenants/{tenant['id']}"
    new_name = unique_name("Renamed")
    assert echo_admin.patch(url, json={"name": new_name}).json()["name"] == new_name
    assert echo_admin.patch(url, json={"status": "suspended"}).json()["status"] == "suspended"
    assert echo_admin.patch(url, json={"status": "active"}).json()["status"] == "active"
    assert (
        echo_admin.patch(url, json={"rate_limit_per_second": 3}).json()["rate_limit_per_second"]
        == 3
    )
    reset = echo_admin.patch(url, json={"rate_limit_per_second": None}).json()
    assert reset["rate_limit_per_second"] is None
    assert reset["name"] == new_name  # untouched fields stay


def test_per_tenant_limits_are_created_changed_and_reset_to_the_default(
    echo_admin: httpx.Client,
) -> None:
    tenant = create_tenant(echo_admin, max_in_flight=4, statement_timeout_ms=1500)
    assert (tenant["max_in_flight"], tenant["statement_timeout_ms"]) == (4, 1500)
    url = f"/admin/tenants/{tenant['id']}"
    changed = echo_admin.patch(url, json={"max_in_flight": 0, "statement_timeout_ms": 250}).json()
    assert (changed["max_in_flight"], changed["statement_timeout_ms"]) == (0, 250)
    reset = echo_admin.patch(url, json={"max_in_flight": None, "statement_timeout_ms": None})
    assert reset.json()["max_in_flight"] is None and reset.json()["statement_timeout_ms"] is None
    assert echo_admin.get(url).json()["max_in_flight"] is None


def test_new_key_works_and_revoked_key_stops(
    echo_admin: httpx.Client, echo_client: httpx.Client
) -> None:
    tenant = create_tenant(echo_admin)
    created = echo_admin.post(f"/admin/tenants/{tenant['id']}/api-keys")
    assert created.status_code == 201
    key = created.json()
    assert set(key) == {"id", "api_key", "prefix", "created_at"}
    assert echo_client.get("/users", headers=bearer(key["api_key"])).status_code == 200
    revoked = echo_admin.delete(f"/admin/tenants/{tenant['id']}/api-keys/{key['id']}")
    assert revoked.status_code == 204
    assert echo_client.get("/users", headers=bearer(key["api_key"])).status_code == 401
    # The tenant's other key is untouched.
    assert echo_client.get("/users", headers=bearer(tenant["api_key"])).status_code == 200
    again = echo_admin.delete(f"/admin/tenants/{tenant['id']}/api-keys/{key['id']}")
    assert again.status_code == 404


def test_delete_removes_the_tenant_and_its_keys(
    echo_admin: httpx.Client, echo_client: httpx.Client
) -> None:
    tenant = create_tenant(echo_admin)
    assert echo_client.get("/users", headers=bearer(tenant["api_key"])).status_code == 200
    assert echo_admin.delete(f"/admin/tenants/{tenant['id']}").status_code == 204
    assert echo_admin.get(f"/admin/tenants/{tenant['id']}").json()["status"] == "pending_deletion"
    assert echo_client.get("/users", headers=bearer(tenant["api_key"])).status_code == 404
    assert echo_admin.delete(f"/admin/tenants/{tenant['id']}?purge=true").status_code == 204
    assert echo_admin.get(f"/admin/tenants/{tenant['id']}").status_code == 404
    assert echo_client.get("/users", headers=bearer(tenant["api_key"])).status_code == 401
