"""One OpenAPI for the whole API: the gateway's own paths plus every routed service's paths.

Each upstream's /openapi.json is fetched at start and refreshed; an upstream that is down
keeps its last document (or none yet) and is asked again soon, never failing the gateway.
"""

from __future__ import annotations

import asyncio
import copy
import importlib.resources
import logging
from collections.abc import Callable
from typing import Any

import aiohttp
from fastapi import APIRouter, FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.staticfiles import StaticFiles

from gateway.proxy import RouteTable

log = logging.getLogger("gateway.openapi")
RETRY_SECONDS = 2.0
_REF = "#/components/schemas/"
# What the gateway itself may answer on any routed path, before or instead of the service.
GATEWAY_ANSWERS = {
    "400": "Malformed request (path, headers or X-Tenant-ID)",
    "401": "Missing or invalid credential",
    "403": "Tenant suspended, or credential and identification disagree",
    "404": "No such tenant, or no route for the path",
    "408": "Request body not received in time",
    "413": "Request body larger than 1 MiB",
    "429": "Over the tenant's rate limit or in-flight cap",
    "431": "Request headers too large",
    "502": "Bad response from the upstream",
    "503": "Upstream or database unavailable",
    "504": "Upstream timed out",
}
SECURITY_SCHEMES = {
    "ApiKeyAuth": {
        "type": "apiKey",
        "in": "header",
        "name": "X-API-Key",
        "description": "A tenant's API key (tk_…); also accepted as `Authorization: Bearer tk_…`.",
    },
    "bearerAuth": {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "A tenant JWT (HS256, claims tenant_id and exp), or an API key.",
    },
    "adminToken": {"type": "http", "scheme": "bearer", "description": "ADMIN_TOKEN"},
}
# What the admin API may answer besides its own results (SPEC §4).
ADMIN_ANSWERS = {
    "400": "Malformed request",
    "401": "Admin token required",
    "404": "No such tenant or key",
    "409": "Conflicts with the tenant's current state",
    "413": "Request body larger than 1 MiB",
    "503": "Database unavailable",
}
_TENANT_SECURITY: list[dict[str, list[str]]] = [{"ApiKeyAuth": []}, {"bearerAuth": []}]
_ERROR = {
    "type": "object",
    "properties": {"detail": {"title": "Detail"}},
    "required": ["detail"],
    "title": "GatewayError",
}


def _rename_refs(node: Any, renames: dict[str, str]) -> Any:
    if isinstance(node, dict):
        return {
            k: (
                _REF + renames.get(v.removeprefix(_REF), v.removeprefix(_REF))
                if k == "$ref" and isinstance(v, str) and v.startswith(_REF)
                else _rename_refs(v, renames)
            )
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [_rename_refs(v, renames) for v in node]
    return node


def _add_answers(operation: dict[str, Any], answers: dict[str, str]) -> None:
    responses = operation.setdefault("responses", {})
    for code, description in answers.items():
        if code not in responses:
            responses[code] = {
                "description": description,
                "content": {"application/json": {"schema": {"$ref": _REF + "GatewayError"}}},
            }


def _is_admin(path: str) -> bool:
    return path == "/admin" or path.startswith("/admin/")


def merge(
    own: dict[str, Any],
    upstreams: dict[str, dict[str, Any]],
    routes: RouteTable,
    *,
    describe_admin: bool = True,
) -> dict[str, Any]:
    """`own` plus, for each upstream URL, the paths of its document that route to it.

    `describe_admin=False` leaves the admin API out: for a port that does not serve it.
    """
    doc = copy.deepcopy(own)
    if not describe_admin:
        doc["paths"] = {p: item for p, item in doc.get("paths", {}).items() if not _is_admin(p)}
    paths: dict[str, Any] = doc.setdefault("paths", {})
    schemas: dict[str, Any] = doc.setdefault("components", {}).setdefault("schemas", {})
    schemas["GatewayError"] = _ERROR
    doc["components"]["securitySchemes"] = SECURITY_SCHEMES
    for path, item in paths.items():
        if _is_admin(path):
            for operation in item.values():
                operation["security"] = [{"adminToken": []}]
                _add_answers(operation, ADMIN_ANSWERS)
    for upstream, service_doc in sorted(upstreams.items()):
        theirs = service_doc.get("components", {}).get("schemas", {})
        # A schema named like another but different is renamed; identical ones are shared.
        renames = {
            name: f"{upstream.rsplit(':', 1)[-1]}_{name}"
            for name, schema in theirs.items()
            if name in schemas and schemas[name] != schema
        }
        service_doc = _rename_refs(service_doc, renames)
        for name, schema in service_doc.get("components", {}).get("schemas", {}).items():
            schemas[renames.get(name, name)] = schema
        for path, item in service_doc.get("paths", {}).items():
            found = routes.route(path)
            if found is None or found[1] != upstream or path in paths:
                continue  # not reachable through the gateway at this path
            for operation in item.values():
                if isinstance(operation, dict) and "responses" in operation:
                    _add_answers(operation, GATEWAY_ANSWERS)
                    operation["security"] = _TENANT_SECURITY
            paths[path] = item
    return doc


class MergedOpenApi:
    """The merged document, with the upstreams' documents kept fresh in the background."""

    def __init__(
        self,
        *,
        own: Callable[[], dict[str, Any]],
        routes: RouteTable,
        refresh_seconds: float,
        describe_admin: bool = True,
    ) -> None:
        self._own = own
        self.describe_admin = describe_admin
        self.routes = routes
        self.refresh_seconds = refresh_seconds
        self.upstreams: dict[str, dict[str, Any]] = {}
        self._failing: set[str] = set()

    def document(self) -> dict[str, Any]:
        """The merged document as of the last refresh."""
        return merge(self._own(), self.upstreams, self.routes, describe_admin=self.describe_admin)

    async def refresh(self, session: aiohttp.ClientSession) -> bool:
        """Fetch every upstream's document once; True when all of them answered."""
        complete = True
        for upstream in {upstream for _, upstream in self.routes.items}:
            try:
                async with session.get(
                    f"{upstream}/openapi.json", timeout=aiohttp.ClientTimeout(total=5)
                ) as response:
                    response.raise_for_status()
                    self.upstreams[upstream] = await response.json()
            except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                complete = False
                # Once per outage, not once per retry: an upstream without a document is a
                # state to notice, not a stream of lines.
                if upstream not in self._failing:
                    self._failing.add(upstream)
                    log.warning("openapi of %s unavailable, kept the last one: %r", upstream, exc)
            else:
                if upstream in self._failing:
                    self._failing.discard(upstream)
                    log.warning("openapi of %s available again", upstream)
        return complete

    async def keep_fresh(self, session: aiohttp.ClientSession) -> None:
        """Refresh forever: every refresh_seconds, sooner while an upstream is missing."""
        while True:
            complete = await self.refresh(session)
            await asyncio.sleep(self.refresh_seconds if complete else RETRY_SECONDS)


def install(app: FastAPI, merged: MergedOpenApi) -> None:
    """GET /openapi.json, GET /docs and the Swagger UI assets, served from a PyPI package."""
    router = APIRouter(include_in_schema=False)
    assets = importlib.resources.files("fastapi_offline") / "static"

    @router.get("/openapi.json")
    async def openapi_json() -> JSONResponse:
        return JSONResponse(merged.document())

    @router.get("/docs")
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title="tenantkit API",
            swagger_js_url="/docs/assets/swagger-ui-bundle.js",
            swagger_css_url="/docs/assets/swagger-ui.css",
            swagger_favicon_url="/docs/assets/favicon.png",
        )

    app.include_router(router)
    app.mount("/docs/assets", StaticFiles(directory=str(assets)), name="docs-assets")
