"""The users service believes only the gateway: a direct call without its signature is 401."""

from __future__ import annotations

import time

import httpx

from gateway.tests.factories import bearer, create_tenant
from kit.testing import Secrets
from services.tenancy.signing import sign_headers


def signed(
    secrets: Secrets, *, tenant_id: int, method: str, target: str, **kw: object
) -> dict[str, str]:
    return sign_headers(
        secrets.signing_secret,
        destination="/users",
        tenant_id=tenant_id,
        request_id="req-1",
        method=method,
        target=target,
        **kw,  # type: ignore[arg-type]
    )


def test_direct_call_without_signature_is_refused_and_creates_nothing(
    users_service, gateway, admin: httpx.Client
) -> None:
    tenant = create_tenant(admin)
    with httpx.Client(base_url=users_service.url, timeout=10) as direct:
        response = direct.post(
            "/users", json={"name": "Sneaky"}, headers={"X-Tenant-ID": str(tenant["id"])}
        )
        assert response.status_code == 401
        assert direct.get("/users", headers={"X-Tenant-ID": str(tenant["id"])}).status_code == 401
    through = httpx.get(f"{gateway.url}/users", headers=bearer(tenant["api_key"]))
    assert through.status_code == 200 and through.json() == []


def test_forged_signature_is_refused(users_service, admin: httpx.Client, secrets: Secrets) -> None:
    tenant = create_tenant(admin)
    forged = sign_headers(
        "not-the-gateways-secret-at-all",
        destination="/users",
        tenant_id=tenant["id"],
        request_id="r",
        method="GET",
        target="/users",
    )
    assert httpx.get(f"{users_service.url}/users", headers=forged).status_code == 401
    genuine = signed(secrets, tenant_id=tenant["id"], method="GET", target="/users")
    assert httpx.get(f"{users_service.url}/users", headers=genuine).status_code == 200
    # Accepted once: the very same signed request again is a replay.
    assert httpx.get(f"{users_service.url}/users", headers=genuine).status_code == 401


def test_signature_replayed_to_another_path_method_or_tenant_is_refused(
    users_service, admin: httpx.Client, secrets: Secrets
) -> None:
    a, b = create_tenant(admin), create_tenant(admin)
    headers = signed(secrets, tenant_id=a["id"], method="GET", target="/users")
    base = users_service.url
    assert httpx.get(f"{base}/users?limit=1", headers=headers).status_code == 401
    assert httpx.get(f"{base}/users/1", headers=headers).status_code == 401
    assert httpx.post(f"{base}/users", json={"name": "x"}, headers=headers).status_code == 401
    assert (
        httpx.get(f"{base}/users", headers={**headers, "X-Tenant-ID": str(b["id"])}).status_code
        == 401
    )


def test_stale_signature_is_refused(users_service, admin: httpx.Client, secrets: Secrets) -> None:
    tenant = create_tenant(admin)
    old = signed(
        secrets, tenant_id=tenant["id"], method="GET", target="/users", now=time.time() - 120
    )
    assert httpx.get(f"{users_service.url}/users", headers=old).status_code == 401


def test_a_repeated_client_request_id_is_correlation_not_a_replay(
    gateway, admin: httpx.Client
) -> None:
    # The client's X-Request-ID is kept and echoed (SPEC §5); the gateway's nonce, not the
    # request id, is what makes each forwarded request unique.
    tenant = create_tenant(admin)
    headers = {**bearer(tenant["api_key"]), "X-Request-ID": "order-42-retry"}
    with httpx.Client(base_url=gateway.url, headers=headers, timeout=10) as client:
        first = client.post("/users", json={"name": "First"})
        second = client.post("/users", json={"name": "Second"})
        assert (first.status_code, second.status_code) == (201, 201)
        assert first.headers["x-request-id"] == second.headers["x-request-id"] == "order-42-retry"
        assert [u["name"] for u in client.get("/users").json()] == ["First", "Second"]
