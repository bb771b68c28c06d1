"""JWT_AUDIENCE and JWT_ISSUER: when set, a token must name them (real gateway process)."""

from __future__ import annotations

from typing import Any

import httpx

from gateway.tests.conftest import StartGateway
from gateway.tests.factories import bearer, create_tenant, tenant_jwt
from kit.testing import Secrets


def test_audience_and_issuer_are_checked_when_set(
    start_gateway: StartGateway, echo_admin: httpx.Client, secrets: Secrets
) -> None:
    gateway = start_gateway({"JWT_AUDIENCE": "tenantkit-api", "JWT_ISSUER": "https://idp.test"})
    tenant_id = create_tenant(echo_admin)["id"]

    def status(**claims: Any) -> int:
        token = tenant_jwt(secrets.jwt_secret, tenant_id, **claims)
        return httpx.get(f"{gateway.url}/echo", headers=bearer(token), timeout=10).status_code

    assert status(aud="tenantkit-api", iss="https://idp.test") == 200
    assert status(aud=["other", "tenantkit-api"], iss="https://idp.test") == 200
    assert status() == 401
    assert status(iss="https://idp.test") == 401
    assert status(aud="tenantkit-api") == 401
    assert status(aud="another-product", iss="https://idp.test") == 401
    assert status(aud="tenantkit-api", iss="https://evil.test") == 401


def test_without_audience_setting_a_token_carrying_one_is_accepted(
    echo_client: httpx.Client, echo_admin: httpx.Client, secrets: Secrets
) -> None:
    tenant_id = create_tenant(echo_admin)["id"]
    token = tenant_jwt(secrets.jwt_secret, tenant_id, aud="whatever", iss="anyone")
    assert echo_client.get("/echo", headers=bearer(token)).status_code == 200
