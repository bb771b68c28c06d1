"""One OpenAPI at the gateway: its admin API plus every routed service's paths (SPEC §10)."""

from __future__ import annotations

import time
from typing import Any

import httpx
from openapi_spec_validator import validate

from gateway.openapi import RETRY_SECONDS
from gateway.tests.factories import wait_for
from kit.servers import free_port
from kit.testing import StartService


def test_the_gateway_serves_one_valid_document_with_the_services_paths(
    start_service: StartService,
) -> None:
    users = start_service("users")
    gateway = start_service("gateway", {"USERS_URL": users.url})
    doc: dict[str, Any] = {}

    def merged() -> bool:
        nonlocal doc
        doc = httpx.get(f"{gateway.url}/openapi.json").json()
        return "/users/{user_id}" in doc["paths"]

    wait_for(merged, within=10)
    validate(doc)  # a valid OpenAPI 3.1 document
    paths = doc["paths"]
    assert {"/admin/tenants", "/admin/tenants/{tenant_id}", "/users", "/users/{user_id}"} <= set(
        paths
    )
    schemes = doc["components"]["securitySchemes"]
    assert schemes["ApiKeyAuth"] == {**schemes["ApiKeyAuth"], "in": "header", "name": "X-API-Key"}
    assert (schemes["bearerAuth"]["type"], schemes["bearerAuth"]["scheme"]) == ("http", "bearer")
    create_user = paths["/users"]["post"]
    assert create_user["security"] == [{"ApiKeyAuth": []}, {"bearerAuth": []}]
    # What the gateway itself answers is documented on the service's operations.
    assert {"401", "429", "503"} <= set(create_user["responses"])
    assert paths["/admin/tenants"]["post"]["security"] == [{"adminToken": []}]
    # The service's own health routes are not reachable through the gateway: not listed twice.
    assert "/readyz" in paths and "users" not in str(paths["/readyz"]).lower()


def test_docs_render_from_assets_the_gateway_serves_itself(start_service: StartService) -> None:
    users = start_service("users")
    gateway = start_service("gateway", {"USERS_URL": users.url})
    page = httpx.get(f"{gateway.url}/docs")
    assert page.status_code == 200 and "/openapi.json" in page.text
    assert "cdn" not in page.text.lower() and "https://" not in page.text.split("<body>")[-1]
    for asset in ("swagger-ui-bundle.js", "swagger-ui.css"):
        assert f"/docs/assets/{asset}" in page.text
        response = httpx.get(f"{gateway.url}/docs/assets/{asset}")
        assert response.status_code == 200 and len(response.content) > 10_000


def test_a_service_down_at_start_is_added_when_it_comes_up(start_service: StartService) -> None:
    port = free_port()
    # /healthz: /readyz rightly says 503 while the only upstream is down.
    gateway = start_service(
        "gateway", {"USERS_URL": f"http://127.0.0.1:{port}"}, ready_path="/healthz"
    )
    # Down: the gateway still serves its own document.
    first = httpx.get(f"{gateway.url}/openapi.json")
    assert first.status_code == 200
    assert "/admin/tenants" in first.json()["paths"] and "/users" not in first.json()["paths"]
    time.sleep(2 * RETRY_SECONDS + 0.5)  # a few retries while it stays down
    start_service("users", port=port)
    wait_for(
        lambda: "/users" in httpx.get(f"{gateway.url}/openapi.json").json()["paths"], within=10
    )
    # One line when the outage starts and one when it ends, not one per retry.
    assert gateway.tail(400).count(f"openapi of http://127.0.0.1:{port} unavailable") == 1
    assert f"openapi of http://127.0.0.1:{port} available again" in gateway.tail(400)
