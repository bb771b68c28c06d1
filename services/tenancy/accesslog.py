"""One log line per request (SPEC §10), written by a pure ASGI middleware on every process."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.tenancy.logs import RequestLine
from services.tenancy.tracecontext import TraceContext, continue_or_start

log = logging.getLogger("access")


def route_template(scope: Scope) -> str | None:
    """The matched route's template (`/users/{user_id}`), never the raw path: ids stay out."""
    state = scope.get("state") or {}
    if "route" in state:  # the gateway names its proxied routes by prefix
        return str(state["route"])
    route = scope.get("route")
    return getattr(route, "path", None)


class AccessLog:
    """Times each request and logs it once, with its ids, when the answer has been sent.

    It continues the caller's `traceparent` (or starts a trace) and leaves the context in
    `scope["state"]["trace"]`, so calls made while serving carry this hop as their parent.
    Pure ASGI: Starlette's BaseHTTPMiddleware would cost a task and a stream per request.
    """

    def __init__(
        self, app: ASGIApp, *, current_trace: Callable[[], TraceContext | None] | None = None
    ) -> None:
        self.app = app
        # With OpenTelemetry on, its server span (outside this middleware) owns the context.
        self.current_trace = current_trace

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        headers = Headers(scope=scope)
        state: dict[str, Any] = scope.setdefault("state", {})
        trace = (self.current_trace and self.current_trace()) or continue_or_start(
            headers.getlist("traceparent")
        )
        state["trace"] = trace
        status = 500  # what the client gets when the app raises before answering

        async def send_seen(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_seen)
        finally:
            # request_id: set by the gateway's RequestIdMiddleware, or by a service once the
            # signed context holds: an unsigned X-Request-ID is never trusted into the log.
            if log.isEnabledFor(logging.INFO):
                route = route_template(scope)
                # The record is made here rather than by log.info(): no caller lookup (a walk
                # up the stack), and its type lets the JSON formatter take its short path.
                line = RequestLine(
                    log.name,
                    logging.INFO,
                    __file__,
                    0,
                    "%s %s %s",
                    (scope["method"], route or "-", status),
                    None,
                )
                line.__dict__.update(
                    request_id=state.get("request_id"),
                    tenant_id=state.get("tenant_id"),
                    method=scope["method"],
                    route=route,
                    status=status,
                    duration_ms=round((time.perf_counter() - started) * 1000, 3),
                    trace_id=trace.trace_id,
                )
                log.handle(line)
