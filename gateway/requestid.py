"""X-Request-ID: keep the client's when it is sane, else make one; echo it on every response."""

from __future__ import annotations

import re
import uuid

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# Safe to log, to put in a header upstream, and to sign: no spaces, no separators of note.
_SANE = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def choose_request_id(headers: Headers) -> str:
    """The client's X-Request-ID if it sent exactly one sane value, else a fresh UUID."""
    values = headers.getlist("x-request-id")
    if len(values) == 1 and _SANE.match(values[0]):
        return values[0]
    return uuid.uuid4().hex


class RequestIdMiddleware:
    """Puts the request id in `request.state.request_id` and on the response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = choose_request_id(Headers(scope=scope))
        scope.setdefault("state", {})["request_id"] = request_id
        encoded = request_id.encode()

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [
                    (k, v) for k, v in message.get("headers", []) if k.lower() != b"x-request-id"
                ]
                message = {**message, "headers": [*headers, (b"x-request-id", encoded)]}
            await send(message)

        await self.app(scope, receive, send_with_id)
