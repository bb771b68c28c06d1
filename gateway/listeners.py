"""Which listener serves what: tenant traffic on the public port; /admin and /metrics on the
internal one when GATEWAY_INTERNAL_PORT is set.

One process, one app, two sockets (uvicorn serves both with one lifespan); this gate reads
the local port of each connection. On the public port /metrics always needs the admin token:
per-tenant counters are not for tenants to read.
"""

from __future__ import annotations

import socket

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.admin import is_admin
from gateway.errors import error_response

_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="admin"'}
_HEALTH = ("/healthz", "/readyz")


def _is_admin_path(path: str) -> bool:
    return path == "/admin" or path.startswith("/admin/")


class ListenerGate:
    """ASGI middleware: route each path to the listener(s) allowed to serve it."""

    def __init__(self, app: ASGIApp, *, admin_token: str, internal_port: int | None) -> None:
        self.app = app
        self.admin_token = admin_token
        self.internal_port = internal_port

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        server = scope.get("server") or ("", None)
        internal = self.internal_port is not None and server[1] == self.internal_port
        refusal = None
        if internal and not (path == "/metrics" or _is_admin_path(path) or path in _HEALTH):
            refusal = error_response(404, "not served on the internal listener")
        elif not internal and self.internal_port is not None and _is_admin_path(path):
            # Not even a 401: the public port does not have an admin API to probe.
            refusal = error_response(404, "no route for this path")
        elif (
            not internal
            and path == "/metrics"
            and not is_admin(Headers(scope=scope), self.admin_token)
        ):
            refusal = error_response(401, "admin token required", _CHALLENGE)
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        # /readyz on the public port of a split gateway says only ready or not (health.py).
        public_only = self.internal_port is not None and not internal
        scope.setdefault("state", {})["public_only"] = public_only
        await self.app(scope, receive, send)


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket, as uvicorn would make it (reuse address, inheritable off)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock
