"""Through the real gateway and users service: one tenant can never touch another's data."""

from __future__ import annotations

import httpx
import pytest

from gateway.tests.factories import bearer, create_tenant, tenant_jwt
from kit.testing import Secrets


@pytest.fixture
def two_tenants(admin: httpx.Client) -> tuple[dict, dict]:  # type: ignore[type-arg]
    return create_tenant(admin), create_tenant(admin)


def users_of(client: httpx.Client, key: str) -> list[dict]:  # type: ignore[type-arg]
    response = client.get("/users", headers=bearer(key))
    assert response.status_code == 200, response.text
    return response.json()


def test_key_of_a_with_tenant_header_of_b_touches_nothing_of_b(
    gateway,
    two_tenants: tuple[dict, dict],  # type: ignore[type-arg]
) -> None:
    a, b = two_tenants
    with httpx.Client(base_url=gateway.url, timeout=10) as client:
        bob = client.post("/users", json={"name": "Bob of B"}, headers=bearer(b["api_key"])).json()
        hostile = {**bearer(a["api_key"]), "X-Tenant-ID": str(b["id"])}
        attempts = [
            client.post("/users", json={"name": "Mallory"}, headers=hostile),
            client.get("/users", headers=hostile),
            client.get(f"/users/{bob['id']}", headers=hostile),
            client.patch(f"/users/{bob['id']}", json={"name": "pwned"}, headers=hostile),
            client.delete(f"/users/{bob['id']}", headers=hostile),
        ]
        assert [r.status_code for r in attempts] == [403] * 5
        for response in attempts:
            assert "Bob" not in response.text
        # Nothing happened for either tenant.
        assert [u["name"] for u in users_of(client, b["api_key"])] == ["Bob of B"]
        assert users_of(client, a["api_key"]) == []


def test_a_cannot_see_or_change_b_by_user_id(gateway, two_tenants: tuple[dict, dict]) -> None:  # type: ignore[type-arg]
    a, b = two_tenants
    with httpx.Client(base_url=gateway.url, timeout=10) as client:
        bob = client.post(
            "/users", json={"name": "Bob", "email": "bob@example.com"}, headers=bearer(b["api_key"])
        )
        bob_id = bob.json()["id"]
        as_a = bearer(a["api_key"])
        assert client.get(f"/users/{bob_id}", headers=as_a).status_code == 404
        assert client.patch(f"/users/{bob_id}", json={"name": "x"}, headers=as_a).status_code == 404
        assert client.delete(f"/users/{bob_id}", headers=as_a).status_code == 404
        # The same email in another tenant is fine: uniqueness does not leak across tenants.
        same = client.post(
            "/users", json={"name": "Bob A", "email": "bob@example.com"}, headers=as_a
        )
        assert same.status_code == 201
        # Ids are per tenant: A's first user has Bob's id, and each tenant gets its own row.
        assert same.json()["id"] == bob_id
        mine = client.get(f"/users/{bob_id}", headers=as_a)
        assert mine.json()["name"] == "Bob A"
        assert client.get(f"/users/{bob_id}", headers=bearer(b["api_key"])).json()["name"] == "Bob"
        renamed = client.patch(f"/users/{bob_id}", json={"name": "Bob A2"}, headers=as_a)
        assert renamed.json()["name"] == "Bob A2"
        assert client.get(f"/users/{bob_id}", headers=bearer(b["api_key"])).json()["name"] == "Bob"


def test_subdomain_of_b_with_key_of_a_is_403(gateway, two_tenants: tuple[dict, dict]) -> None:  # type: ignore[type-arg]
    a, b = two_tenants
    with httpx.Client(base_url=gateway.url, timeout=10) as client:
        response = client.post(
            "/users",
            json={"name": "Mallory"},
            headers={**bearer(a["api_key"]), "Host": f"{b['slug']}.example.test"},
        )
        assert response.status_code == 403
        assert users_of(client, b["api_key"]) == []
        assert users_of(client, a["api_key"]) == []
        ok = client.get(
            "/users", headers={**bearer(a["api_key"]), "Host": f"{a['slug']}.example.test"}
        )
        assert ok.status_code == 200


def test_jwt_of_a_with_tenant_header_of_b_is_403(
    gateway,
    secrets: Secrets,
    two_tenants: tuple[dict, dict],  # type: ignore[type-arg]
) -> None:
    a, b = two_tenants
    token = tenant_jwt(secrets.jwt_secret, a["id"])
    with httpx.Client(base_url=gateway.url, timeout=10) as client:
        assert client.get("/users", headers=bearer(token)).status_code == 200
        hostile = {**bearer(token), "X-Tenant-ID": str(b["id"])}
        assert client.post("/users", json={"name": "M"}, headers=hostile).status_code == 403
        assert users_of(client, b["api_key"]) == []


def test_deleting_a_tenant_removes_its_users_and_leaves_others(
    gateway,
    admin: httpx.Client,
    two_tenants: tuple[dict, dict],  # type: ignore[type-arg]
) -> None:
    a, b = two_tenants
    with httpx.Client(base_url=gateway.url, timeout=10) as client:
        for key, name in ((a["api_key"], "Alice"), (b["api_key"], "Bea")):
            assert (
                client.post("/users", json={"name": name}, headers=bearer(key)).status_code == 201
            )
        assert admin.delete(f"/admin/tenants/{a['id']}?purge=true").status_code == 204
        assert client.get("/users", headers=bearer(a["api_key"])).status_code == 401
        assert [u["name"] for u in users_of(client, b["api_key"])] == ["Bea"]
