"""/admin and /metrics on an internal listener; /metrics on the public port needs the token.

Real gateway processes, each on its own ports.
"""

from __future__ import annotations

import httpx

from gateway.tests.conftest import StartGateway
from gateway.tests.factories import bearer, create_tenant
from kit.servers import free_port
from kit.testing import Secrets


def test_public_metrics_need_the_admin_token(echo_client: httpx.Client, secrets: Secrets) -> None:
    refused = echo_client.get("/metrics")
    assert refused.status_code == 401 and refused.json() == {"detail": "admin token required"}
    assert echo_client.get("/metrics", headers=bearer("tk_" + "x" * 40)).status_code == 401
    allowed = echo_client.get("/metrics", headers=bearer(secrets.admin_token))
    assert allowed.status_code == 200 and "gateway_requests_total" in allowed.text


def test_internal_listener_serves_admin_and_metrics_and_the_public_port_does_not(
    start_gateway: StartGateway, secrets: Secrets
) -> None:
    internal_port = free_port()
    gateway = start_gateway({"GATEWAY_INTERNAL_PORT": str(internal_port)})
    internal = f"http://127.0.0.1:{internal_port}"
    admin = bearer(secrets.admin_token)

    with (
        httpx.Client(base_url=internal, timeout=10) as inside,
        httpx.Client(base_url=internal, headers=admin, timeout=10) as inside_admin,
    ):
        assert inside.get("/metrics").status_code == 200  # the internal network is trusted
        assert inside.get("/admin/tenants").status_code == 401  # the admin API still is not
        tenant = create_tenant(inside_admin)
        assert inside.get("/readyz").status_code == 200
        # No tenant traffic on the internal listener.
        assert inside.get("/echo", headers=bearer(tenant["api_key"])).status_code == 404

    with httpx.Client(base_url=gateway.url, timeout=10) as outside:
        assert outside.get("/admin/tenants", headers=admin).status_code == 404
        assert outside.post("/admin/tenants", json={"name": "x"}, headers=admin).status_code == 404
        assert outside.get("/metrics").status_code == 401
        assert outside.get("/metrics", headers=admin).status_code == 200
        assert outside.get("/echo", headers=bearer(tenant["api_key"])).status_code == 200
        # Readiness details (dependencies, route prefixes) only on the internal listener.
        assert outside.get("/readyz").json() == {"status": "ok"}
    with httpx.Client(base_url=internal, timeout=10) as inside:
        assert set(inside.get("/readyz").json()) >= {"postgres", "redis", "upstreams", "status"}
