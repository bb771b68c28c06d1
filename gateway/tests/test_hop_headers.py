"""What a client cannot smuggle to an upstream: method overrides and look-alikes of the
gateway's own headers. Against the real gateway and the real echo upstream."""

from __future__ import annotations

import httpx
import pytest

from gateway.tests.factories import bearer, create_tenant


@pytest.fixture
def tenant(echo_admin: httpx.Client) -> dict[str, object]:
    return create_tenant(echo_admin)


def _names_seen(response: httpx.Response) -> list[str]:
    return [name for name, _ in response.json()["headers"]]


def test_method_override_headers_never_reach_the_upstream(
    echo_client: httpx.Client, tenant: dict[str, object]
) -> None:
    overrides = ["X-HTTP-Method-Override", "X-HTTP-Method", "X-Method-Override"]
    spellings = [*overrides, "x_http_method_override", "X_Method_Override"]
    headers = {**bearer(str(tenant["api_key"])), **{name: "DELETE" for name in spellings}}
    response = echo_client.post("/echo/things", content=b"{}", headers=headers)
    assert response.status_code == 200, response.text
    seen = {n.lower().replace("_", "-") for n in _names_seen(response)}
    assert not seen & {o.lower() for o in overrides}
    assert response.json()["method"] == "POST"


def test_names_that_normalise_to_the_gateways_own_headers_are_dropped(
    echo_client: httpx.Client, tenant: dict[str, object], echo_admin: httpx.Client
) -> None:
    other = create_tenant(echo_admin)
    posing = {
        "X_Tenant_ID": str(other["id"]),
        "x-tenant_id": str(other["id"]),
        "X-Tenant_Signature": "0" * 64,
        "X_TENANT_TIMESTAMP": "1",
        "X_Tenant_Nonce": "0" * 32,
        "X-Tenant-Extra": "placement=elsewhere",
        "X_Tenant_Extra": "placement=elsewhere",
        "X-Tenant-Anything-New": "posing",
        "X_Request_ID": "smuggled",
        "X_Forwarded_For": "10.0.0.1",
    }
    response = echo_client.get("/echo", headers={**bearer(str(tenant["api_key"])), **posing})
    assert response.status_code == 200, response.text
    names = _names_seen(response)
    # Only the gateway's own copies arrive, each exactly once, under their canonical names.
    assert [n for n in names if "_" in n] == []
    for own in ("x-tenant-id", "x-tenant-signature", "x-tenant-timestamp", "x-tenant-nonce"):
        assert names.count(own) == 1, own
    assert "x-tenant-extra" not in names and "x-tenant-anything-new" not in names
    assert response.json()["tenant_id"] == tenant["id"]
    assert dict(response.json()["headers"])["x-forwarded-for"] == "127.0.0.1"
