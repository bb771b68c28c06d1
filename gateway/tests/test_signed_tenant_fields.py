"""What the gateway signs about a tenant beside its id: the services' per-tenant statement
timeout travels in the signed context, so no client and no other service can set it."""

from __future__ import annotations

import httpx

from gateway.tests.factories import bearer, settled_tenant


def test_a_tenants_own_statement_timeout_reaches_the_service_signed(
    echo_client: httpx.Client, echo_admin: httpx.Client
) -> None:
    tenant = settled_tenant(echo_admin, statement_timeout_ms=250)
    response = echo_client.get("/echo", headers=bearer(str(tenant["api_key"])))
    assert response.status_code == 200, response.text
    # The echo upstream verified the MAC, which covers the extra fields.
    assert response.json()["extra"] == {"statement_timeout_ms": "250"}


def test_a_changed_statement_timeout_is_signed_from_then_on(
    echo_client: httpx.Client, echo_admin: httpx.Client
) -> None:
    tenant = settled_tenant(echo_admin)
    key = bearer(str(tenant["api_key"]))
    first = echo_client.get("/echo", headers=key)
    assert first.status_code == 200, first.text
    # No value of its own: the service's TENANT_STATEMENT_TIMEOUT_MS applies.
    assert first.json()["extra"] == {}
    changed = echo_admin.patch(f"/admin/tenants/{tenant['id']}", json={"statement_timeout_ms": 900})
    assert changed.status_code == 200, changed.text
    # The admin change invalidates the cached tenant on this replica at once.
    second = echo_client.get("/echo", headers=key)
    assert second.json()["extra"] == {"statement_timeout_ms": "900"}
