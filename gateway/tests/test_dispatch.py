"""Tenant requests skip FastAPI's router (gateway/dispatch.py) and are answered exactly as
before: the gateway's own paths still reach their routes, errors keep their JSON shape, an
unknown method is a 405, and the metrics and log line still name the service prefix."""

from __future__ import annotations

import httpx
import pytest
from fastapi import APIRouter, FastAPI
from starlette.responses import PlainTextResponse
from starlette.routing import Mount

from gateway.dispatch import TenantPaths, first_segments
from gateway.tests.factories import bearer, create_tenant


async def _ok(_request: object) -> PlainTextResponse:
    return PlainTextResponse("own")


def _app_like_the_gateway() -> FastAPI:
    """Own routes in every form the gateway uses: included router, plain route, mount."""
    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
    admin = APIRouter(prefix="/admin")
    admin.add_api_route("/tenants/{tenant_id}", _ok)
    app.include_router(admin)
    app.add_route("/healthz", _ok)
    app.mount("/docs/assets", PlainTextResponse("asset"))
    app.add_route("/{path:path}", _ok, methods=["GET"])
    return app


def _dispatcher(app: FastAPI) -> TenantPaths:
    return TenantPaths(
        app,
        handler=_ok,  # type: ignore[arg-type]
        catch_all=app.router.routes[-1],
        own_routes=lambda: app.router.routes,
        methods=["GET"],
        exception_handlers={},
    )


def _tenant(dispatch: TenantPaths, path: str, method: str = "GET") -> bool:
    return dispatch.is_tenant_request({"type": "http", "method": method, "path": path})


def test_own_paths_go_to_fastapi_and_the_rest_take_the_shortcut() -> None:
    dispatch = _dispatcher(_app_like_the_gateway())
    # Included routers are walked: /admin is own even though FastAPI keeps it as one node.
    assert dispatch.own == {"admin", "healthz", "docs"}
    for own in ("/admin/tenants/3", "/admin", "/healthz", "/docs/assets/app.js"):
        assert not _tenant(dispatch, own), own
    for tenant in ("/users/1", "/users", "/", "/adminx/1", "/healthzz"):
        assert _tenant(dispatch, tenant), tenant
    # A method the catch-all does not serve gets FastAPI's 405, not the pipeline.
    assert not _tenant(dispatch, "/users/1", method="TRACE")


def test_an_own_route_with_a_parameter_first_turns_the_shortcut_off() -> None:
    app = _app_like_the_gateway()
    app.router.routes.insert(0, Mount("/{anything}", PlainTextResponse("x")))
    assert first_segments(app.router.routes) is None
    assert not _tenant(_dispatcher(app), "/users/1")


@pytest.fixture
def tenant(echo_admin: httpx.Client) -> dict[str, object]:
    return create_tenant(echo_admin)


def test_tenant_answers_keep_their_shape_through_the_shortcut(
    echo_client: httpx.Client, echo_admin: httpx.Client, tenant: dict[str, object]
) -> None:
    refused = echo_client.get("/echo/things")
    assert refused.status_code == 401
    assert refused.json() == {"detail": "credentials required"}
    assert refused.headers["x-request-id"]

    trace = echo_client.request("TRACE", "/echo/things", headers=bearer(str(tenant["api_key"])))
    assert trace.status_code == 405
    assert "GET" in trace.headers["allow"]
    assert trace.json() == {"detail": "Method Not Allowed"}

    # An own path is never proxied, whatever the method.
    assert echo_client.post("/healthz").status_code == 405

    served = echo_client.get("/echo/things", headers=bearer(str(tenant["api_key"])))
    assert served.status_code == 200, served.text
    assert served.json()["target"] == "/echo/things"
    assert served.json()["tenant_id"] == tenant["id"]
    assert served.headers["ratelimit-limit"]
    # Labelled by the service prefix, as when FastAPI's router matched the catch-all.
    text = echo_admin.get("/metrics").text
    series = [x for x in text.splitlines() if x.startswith("gateway_http_requests_total{")]
    assert any('route="/echo"' in x and 'status_class="2xx"' in x for x in series), series
