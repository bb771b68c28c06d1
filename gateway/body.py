"""Reading the client's whole body before anything is signed or sent upstream.

The signature covers the body's SHA-256, so the body is read in full first (at most 1 MiB),
within REQUEST_BODY_TIMEOUT_SECONDS. While a client trickles its body the gateway holds no
database connection and no upstream connection: a slow client costs only itself (408).
"""

from __future__ import annotations

import asyncio

from starlette.requests import ClientDisconnect, Request

from gateway.errors import GatewayError

MAX_BODY_BYTES = 1024 * 1024
# The rest of the body was never read, so the connection cannot carry another request.
_CLOSE = {"Connection": "close"}


def declared_length(request: Request) -> int | None:
    """The declared Content-Length (413 above the limit), or None when the body is chunked."""
    values = request.headers.getlist("content-length")
    if not values:
        return None
    if len(set(values)) != 1 or not values[0].isascii() or not values[0].isdigit():
        raise GatewayError(400, "malformed Content-Length")
    length = int(values[0])
    if length > MAX_BODY_BYTES:
        raise GatewayError(413, "request body larger than 1 MiB", _CLOSE)
    return length


async def _read(request: Request) -> bytes:
    chunks: list[bytes] = []
    seen = 0
    # Content-Length can be absent (chunked), so the limit is also counted as bytes arrive.
    async for chunk in request.stream():
        seen += len(chunk)
        if seen > MAX_BODY_BYTES:
            raise GatewayError(413, "request body larger than 1 MiB", _CLOSE)
        chunks.append(chunk)
    return b"".join(chunks)


async def read_body(request: Request, *, timeout_seconds: float) -> bytes | None:
    """The whole body (None when the request has none); 408 when it takes too long."""
    length = declared_length(request)
    if length is None and "transfer-encoding" not in request.headers:
        return None
    try:
        async with asyncio.timeout(timeout_seconds):
            return await _read(request)
    except TimeoutError:
        raise GatewayError(
            408, f"request body not received within {timeout_seconds:g} s", _CLOSE
        ) from None
    except ClientDisconnect:
        # Nobody is left to answer; 400 keeps the access log honest.
        raise GatewayError(400, "client went away while sending the body") from None
