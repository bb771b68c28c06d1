"""405 answers that list every method the resource serves (RFC 9110 §15.5.6).

Starlette answers a 405 with the methods of the first route whose path matched, so
`OPTIONS /users` said `Allow: GET` although POST is served too.
"""

from __future__ import annotations

from collections.abc import Iterable

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException
from starlette.routing import BaseRoute, Match

ORDER = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def allow_header(methods: Iterable[str]) -> str:
    """`GET, POST`: HEAD left out (it comes with GET), in the usual order."""
    found = {m.upper() for m in methods} - {"HEAD"}
    return ", ".join(m for m in ORDER if m in found) + "".join(
        f", {m}" for m in sorted(found - set(ORDER))
    )


def served_methods(routes: Iterable[BaseRoute], request: Request) -> set[str]:
    """Every method some route serves on the request's path (asked of each route, by method)."""
    routes = list(routes)
    served: set[str] = set()
    for method in ORDER:
        # matches() is the public way in: it also sees inside included routers.
        scope = {**request.scope, "method": method}
        if any(route.matches(scope)[0] is Match.FULL for route in routes):
            served.add(method)
    return served


def method_not_allowed(methods: Iterable[str]) -> JSONResponse:
    """The 405 answer, with its Allow header."""
    return JSONResponse(
        {"detail": "Method Not Allowed"},
        status_code=405,
        headers={"Allow": allow_header(methods)},
    )


def install_method_not_allowed(app: FastAPI) -> None:
    """Make every 405 of `app` list all the methods served on the path."""

    async def handler(request: Request, exc: Exception) -> Response:
        if isinstance(exc, HTTPException) and exc.status_code == 405:
            return method_not_allowed(served_methods(request.app.router.routes, request))
        assert isinstance(exc, HTTPException)
        return await http_exception_handler(request, exc)

    app.add_exception_handler(HTTPException, handler)
