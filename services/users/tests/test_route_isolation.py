"""Every route of the app is probed across tenants automatically: a new route cannot skip it.

The route table is read from create_app(); each route that is not on the short public list
must depend on the signed tenant context, answer 401 without it, and, called by tenant B
with tenant A's ids, neither show nor change anything of A's.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import psycopg2.extensions
import pytest
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, RouteContext, iter_route_contexts

from services.tenancy.context import signed_context
from services.users.config import Settings
from services.users.main import create_app
from services.users.tests.conftest import SignedClient, owner_rows

# /metrics: for the operator's scraper on the internal network (SPEC §10); only the
# gateway's public port puts it behind the admin token.
PUBLIC = {("GET", "/healthz"), ("GET", "/readyz"), ("GET", "/metrics")}
# FastAPI's own documentation routes (plain starlette routes, not APIRoutes).
DOCS = {"/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"}


def _routes() -> Iterator[tuple[str, str, RouteContext]]:
    # Building the app opens nothing: the engine is created by the lifespan, never run here.
    settings = Settings.model_validate(
        {
            "APP_DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none",
            "INTERNAL_SIGNING_SECRET": "route-table-walk-only-secret",
        }
    )
    # iter_route_contexts: the routes as served, included routers flattened.
    for route in iter_route_contexts(create_app(settings).routes):
        # A route without methods (a mount, a websocket) has no probe yet: list it as "?".
        for method in sorted(route.methods or {"?"}):
            if method != "HEAD":
                yield method, str(route.path), route


def _signed(route: RouteContext) -> bool:
    dependant = getattr(route, "dependant", None)
    return (
        isinstance(route.original_route, APIRoute) and dependant is not None and _needs(dependant)
    )


def _needs(dependant: Dependant) -> bool:
    return dependant.call is signed_context or any(_needs(d) for d in dependant.dependencies)


TENANT_ROUTES = [
    (method, path)
    for method, path, route in _routes()
    if (method, path) not in PUBLIC and path not in DOCS
]


def test_every_route_is_public_docs_or_behind_the_signed_context() -> None:
    unprotected = [
        (method, path)
        for method, path, route in _routes()
        if (method, path) not in PUBLIC and path not in DOCS and not _signed(route)
    ]
    assert unprotected == []
    # The walk below covers something: the users resource's five operations.
    assert len(TENANT_ROUTES) >= 5


@pytest.fixture
def victim(
    api: SignedClient, make_tenant: Callable[[], int], owner: psycopg2.extensions.connection
) -> Iterator[tuple[int, list[dict[str, Any]]]]:
    """Tenant A with two users; afterwards its rows must be exactly as they were."""
    tenant = make_tenant()
    users = []
    for _ in range(2):
        marker = uuid.uuid4().hex
        response = api.request(
            "POST",
            "/users",
            tenant,
            json={"name": f"victim-{marker}", "email": f"v{marker}@a.example"},
        )
        assert response.status_code == 201
        users.append(response.json())
    query = "SELECT id, name, email, updated_at FROM users WHERE tenant_id = %s ORDER BY id"
    before = owner_rows(owner, query, tenant)
    yield tenant, users
    assert owner_rows(owner, query, tenant) == before


def _target(path: str, user_id: int) -> str:
    return path.replace("{user_id}", str(user_id))


def _body(method: str, marker: str) -> dict[str, Any]:
    if method in ("POST", "PATCH", "PUT"):
        return {"json": {"name": f"probe-{marker}", "email": f"p{marker}@b.example"}}
    return {}


@pytest.mark.parametrize(("method", "path"), TENANT_ROUTES)
def test_route_refuses_a_request_without_signature(
    api: SignedClient, victim: tuple[int, list[dict[str, Any]]], method: str, path: str
) -> None:
    tenant, users = victim
    target = _target(path, users[0]["id"])
    response = api.client.request(
        method, target, headers={"x-tenant-id": str(tenant)}, **_body(method, "x")
    )
    assert response.status_code == 401


@pytest.mark.parametrize(("method", "path"), TENANT_ROUTES)
def test_route_shows_and_changes_nothing_of_another_tenant(
    api: SignedClient,
    make_tenant: Callable[[], int],
    victim: tuple[int, list[dict[str, Any]]],
    method: str,
    path: str,
) -> None:
    _, users = victim
    intruder = make_tenant()
    for user in users:
        target = _target(path, user["id"])
        for query in ("", f"?after={user['id'] - 1}"):
            response = api.request(
                method, target + query, intruder, **_body(method, uuid.uuid4().hex)
            )
            for leaked in users:
                assert leaked["name"] not in response.text and leaked["email"] not in response.text
            if "{" in path:
                # 404, never 403: another tenant's id is indistinguishable from no id at all.
                assert response.status_code == 404, response.text
            else:
                assert response.status_code < 300, response.text
                items = response.json()
                for item in items if isinstance(items, list) else [items]:
                    assert item["tenant_id"] == intruder


@pytest.mark.parametrize(("method", "path"), TENANT_ROUTES)
def test_route_given_an_id_both_tenants_hold_acts_on_the_callers_own_row(
    api: SignedClient,
    make_tenant: Callable[[], int],
    victim: tuple[int, list[dict[str, Any]]],
    method: str,
    path: str,
) -> None:
    _, users = victim
    intruder = make_tenant()
    marker = uuid.uuid4().hex
    own = api.request("POST", "/users", intruder, json={"name": f"intruder-{marker}"}).json()
    # Ids are numbered per tenant: the intruder's user 1 and the victim's user 1 coexist,
    # and the victim's user 2 exists for the victim only.
    assert own["id"] == users[0]["id"] == 1 and users[1]["id"] == 2
    for user in users:
        response = api.request(
            method, _target(path, user["id"]), intruder, **_body(method, uuid.uuid4().hex)
        )
        for leaked in users:
            assert leaked["name"] not in response.text and leaked["email"] not in response.text
        if "{" in path and user["id"] != own["id"]:
            assert response.status_code == 404, response.text
            continue
        assert response.status_code < 300, response.text
        if response.content:
            items = response.json()
            for item in items if isinstance(items, list) else [items]:
                assert item["tenant_id"] == intruder
                assert item["name"].startswith(("intruder-", "probe-")), item
