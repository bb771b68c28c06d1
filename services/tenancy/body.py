"""Receive the whole request body before the app runs: no query waits on a slow client.

A route's dependencies may open a transaction (look up the user in the path) before a body
parameter is parsed. If the body were still arriving, that transaction would sit `idle in
transaction` on a pooled connection for as long as the client cares to trickle, and 20 slow
clients would hold the whole pool. Reading the body here, before routing, makes that
impossible for every route of every service, whatever order its parameters come in.
"""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

# The gateway refuses larger bodies (413); the same bound here keeps a direct caller from
# making a service buffer more.
MAX_BODY_BYTES = 1024 * 1024


class BodyTooLarge(Exception):
    """The body exceeds MAX_BODY_BYTES."""


async def _read_body(receive: Receive, limit: int) -> tuple[bytes, Message | None]:
    """The whole body; or the disconnect message that ended it early."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks), message
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks), None


class ReadBodyFirst:
    """ASGI layer: buffer the (bounded) body, then call the app with it already complete."""

    def __init__(self, app: ASGIApp, *, max_body_bytes: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            body, disconnect = await _read_body(receive, self.max_body_bytes)
        except BodyTooLarge:
            await _too_large(send)
            return
        if disconnect is not None:
            return  # the client left before sending its body: nothing to answer
        delivered = False

        async def replay() -> Message:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            # Later reads wait for the disconnect, as they would without this layer.
            return await receive()

        await self.app(scope, replay, send)


async def _too_large(send: Send) -> None:
    payload = json.dumps({"detail": "request body larger than 1 MiB"}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})
