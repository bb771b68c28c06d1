"""merge(): which service paths reach the merged document, and how schemas are shared."""

from __future__ import annotations

from typing import Any

from openapi_spec_validator import validate

from gateway.openapi import merge
from gateway.proxy import RouteTable

USERS, BILLING = "http://127.0.0.1:8001", "http://127.0.0.1:8002"


def doc(paths: dict[str, Any], schemas: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {"title": "t", "version": "1"},
        "paths": paths,
        "components": {"schemas": schemas or {}},
    }


def op(ref: str | None = None) -> dict[str, Any]:
    content = {"application/json": {"schema": {"$ref": f"#/components/schemas/{ref}"}}}
    return {
        "get": {
            "responses": {"200": {"description": "ok", **({"content": content} if ref else {})}}
        }
    }


ID = {"name": "id", "in": "path", "required": True, "schema": {"type": "integer"}}
OWN = doc({"/admin/tenants": op(), "/healthz": op()})
ROUTES = RouteTable({"/users": USERS, "/billing": BILLING})


def test_only_paths_that_route_to_their_service_are_added() -> None:
    users = doc(
        {
            "/users": op(),
            "/users/{id}": {"get": {**op()["get"], "parameters": [ID]}},
            "/healthz": op(),
            "/billing": op(),
        }
    )
    merged = merge(OWN, {USERS: users}, ROUTES)
    # /healthz stays the gateway's; /billing belongs to another upstream.
    assert set(merged["paths"]) == {"/admin/tenants", "/healthz", "/users", "/users/{id}"}
    assert merged["paths"]["/healthz"] == OWN["paths"]["/healthz"]
    assert "security" not in merged["paths"]["/healthz"]["get"]
    assert merged["paths"]["/users"]["get"]["security"] == [{"ApiKeyAuth": []}, {"bearerAuth": []}]
    validate(merged)


def test_same_named_but_different_schemas_are_both_kept() -> None:
    user = {"type": "object", "properties": {"name": {"type": "string"}}}
    invoice = {"type": "object", "properties": {"total": {"type": "number"}}}
    merged = merge(
        OWN,
        {
            USERS: doc({"/users": op("Item")}, {"Item": user}),
            BILLING: doc({"/billing": op("Item")}, {"Item": invoice}),
        },
        ROUTES,
    )
    schemas = merged["components"]["schemas"]
    users_ref = merged["paths"]["/users"]["get"]["responses"]["200"]["content"]
    billing_ref = merged["paths"]["/billing"]["get"]["responses"]["200"]["content"]
    users_name = users_ref["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
    billing_name = billing_ref["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
    assert (schemas[users_name], schemas[billing_name]) == (invoice, user)[::-1]
    validate(merged)


def test_a_port_that_does_not_serve_the_admin_api_does_not_describe_it() -> None:
    merged = merge(OWN, {}, ROUTES, describe_admin=False)
    assert set(merged["paths"]) == {"/healthz"}
    assert OWN["paths"].keys() == {"/admin/tenants", "/healthz"}  # the input is untouched
