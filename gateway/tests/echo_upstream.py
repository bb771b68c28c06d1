"""A real upstream for gateway tests: verifies the signed context and echoes what arrived.

Run as `python -m gateway.tests.echo_upstream` with ECHO_HOST, ECHO_PORT and
INTERNAL_SIGNING_SECRET set (kit.procs.start_service("echo", argv=...) does that).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from services.tenancy.signing import (
    SignatureError,
    destination_key,
    request_target,
    verify_headers,
)


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def echo(request: Request) -> Response:
    """Check the gateway's signature like a service would, then describe the request."""
    target = request_target(request.scope["raw_path"], request.scope["query_string"])
    # It serves several routes (/users, /echo): the destination is the path's first segment.
    destination = "/" + request.url.path.split("/")[1]
    body = await request.body()
    try:
        context = verify_headers(
            destination_key(os.environ["INTERNAL_SIGNING_SECRET"], destination),
            getlist=request.headers.getlist,
            method=request.method,
            target=target,
            destination=destination,
            body=body,
        )
    except SignatureError as exc:
        return JSONResponse({"detail": f"signature: {exc}"}, status_code=401)
    trickle = int(request.query_params.get("trickle", "0"))
    if trickle:
        return StreamingResponse(_trickle(trickle), media_type="text/plain")
    delay = float(request.query_params.get("delay", "0"))
    if delay:
        await asyncio.sleep(delay)
    payload = {
        "tenant_id": context.tenant_id,
        "request_id": context.request_id,
        "nonce": context.nonce,
        "extra": dict(context.extra),
        "method": request.method,
        "target": target,
        "headers": [
            [k.decode("latin-1"), v.decode("latin-1")] for k, v in request.scope["headers"]
        ],
        "body_length": len(body),
        "body_sha256": hashlib.sha256(body).hexdigest(),
    }
    status = int(request.query_params.get("status", "200"))
    response = JSONResponse(payload, status_code=status)
    # Response headers the gateway must pass (both cookies) or drop (the hop-by-hop ones).
    response.headers.append("set-cookie", "a=1")
    response.headers.append("set-cookie", "b=2")
    response.headers["x-upstream"] = "echo"
    response.headers["keep-alive"] = "timeout=5"
    response.headers["x-request-id"] = "upstream-made-this-up"
    return response


async def _trickle(seconds: int) -> AsyncIterator[bytes]:
    """One byte a second: an answer that is still streaming when the client leaves."""
    for _ in range(seconds):
        yield b"."
        await asyncio.sleep(1)


def build() -> Starlette:
    """The echo app."""
    methods = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
    return Starlette(
        routes=[
            Route("/healthz", healthz),
            Route("/{path:path}", echo, methods=methods),
        ]
    )


if __name__ == "__main__":
    uvicorn.run(
        build(),
        host=os.environ["ECHO_HOST"],
        port=int(os.environ["ECHO_PORT"]),
        log_level="warning",
    )
