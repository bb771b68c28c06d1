"""Tenant requests go straight to the pipeline; the gateway's own paths go to FastAPI.

The proxied route is one catch-all, yet through FastAPI every tenant request paid for the
router's walk over the own routes, the route's wrapper, the exception middleware and the
dependency exit stack: ~5 % of the gateway's CPU in issue 10's profile. This middleware sits
innermost (inside every user middleware: request id, log line, metrics, admin and listener
gates, which still see every request) and sends a request whose first path segment no own
route can match to the pipeline's handler itself, with the catch-all's exception handlers.
Anything else, including a method the catch-all does not serve, goes the FastAPI way.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Receive, Scope, Send

Handler = Callable[[Request], Awaitable[Response]]
ExceptionHandler = Callable[[Request, Any], Response | Awaitable[Response]]


def _paths(routes: Iterable[Any], prefix: str = "") -> Iterable[str | None]:
    """Every own route's full path; None for a route whose path cannot be told."""
    for route in routes:
        # FastAPI >= 0.16x keeps an included router as one lazy node: walk what it includes.
        included = getattr(route, "original_router", None)
        if included is not None:
            context = getattr(route, "include_context", None)
            yield from _paths(included.routes, prefix + str(getattr(context, "prefix", "")))
        else:
            path = getattr(route, "path", None)
            yield None if path is None else prefix + path


def first_segments(routes: Iterable[Any]) -> frozenset[str] | None:
    """First path segments of the own routes; None (no shortcut) when one is a parameter."""
    segments = set()
    for path in _paths(routes):
        if path is None or not path.startswith("/"):
            return None
        first = path[1:].split("/", 1)[0]
        if "{" in first:
            return None
        segments.add(first)
    return frozenset(segments)


class TenantPaths:
    """ASGI middleware: tenant requests to `handler` directly, the rest to the app."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        handler: Handler,
        catch_all: BaseRoute,
        own_routes: Callable[[], Iterable[BaseRoute]],
        methods: Iterable[str],
        exception_handlers: Mapping[Any, ExceptionHandler],
    ) -> None:
        self.app = app
        self.handler = handler
        self.catch_all = catch_all
        # Built with the middleware stack, at the first request: every route is in place.
        self.own = first_segments(r for r in own_routes() if r is not catch_all)
        self.methods = frozenset(methods)
        # By exception class, as the exception middleware would; 500 / Exception stay with
        # the server error middleware outside.
        self.exception_handlers = {
            cls: handle
            for cls, handle in exception_handlers.items()
            if isinstance(cls, type) and cls is not Exception
        }

    def is_tenant_request(self, scope: Scope) -> bool:
        """True when no own route can match: the catch-all would take it."""
        if self.own is None or scope["type"] != "http" or scope["method"] not in self.methods:
            return False
        path: str = scope["path"]
        return path[1:].split("/", 1)[0] not in self.own

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self.is_tenant_request(scope):
            await self.app(scope, receive, send)
            return
        # What the router would have set: the log line and the metrics name the route by it.
        scope["route"] = self.catch_all
        scope["endpoint"] = self.handler
        scope["path_params"] = {"path": scope["path"][1:]}
        request = Request(scope, receive, send)
        try:
            response = await self.handler(request)
        except Exception as exc:
            handle = self._handler_for(exc)
            if handle is None:
                raise  # the server error middleware's 500, as before
            answer = handle(request, exc)
            response = await answer if inspect.isawaitable(answer) else answer
        await response(scope, receive, send)

    def _handler_for(self, exc: Exception) -> ExceptionHandler | None:
        for cls in type(exc).__mro__:
            if cls in self.exception_handlers:
                return self.exception_handlers[cls]
        return None
