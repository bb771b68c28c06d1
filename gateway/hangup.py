"""A client that hangs up before its answer starts abandons the upstream request.

Starlette does not cancel a handler when its client goes away, so without this a request
to a slow upstream would keep its admission slot (and the upstream's work) until the
upstream answered. One pump task owns the ASGI `receive`: it hands body chunks on to the
forwarding step through a one-message queue (back-pressure kept) and notices the
disconnect, whether it comes during the upload or after it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import TypeVar

from starlette.requests import Request
from starlette.types import Message

from gateway.errors import GatewayError

T = TypeVar("T")
# nginx's "client closed request": nobody receives it, but logs and metrics count it.
CLIENT_CLOSED = 499


async def abandon_on_hangup(request: Request, step: Callable[[Request], Awaitable[T]]) -> T:
    """step(request) with the same request, cancelled if the client disconnects first."""
    queue: asyncio.Queue[Message] = asyncio.Queue(maxsize=1)
    hung_up = asyncio.Event()

    async def pump() -> None:
        while True:
            message = await request.receive()
            if message["type"] == "http.disconnect":
                hung_up.set()
                await queue.put(message)
                return
            await queue.put(message)

    work = asyncio.ensure_future(step(Request(request.scope, queue.get)))
    pumping = asyncio.ensure_future(pump())
    hangup = asyncio.ensure_future(hung_up.wait())
    try:
        await asyncio.wait({work, hangup}, return_when=asyncio.FIRST_COMPLETED)
        if work.done():
            return work.result()
        work.cancel()
        with contextlib.suppress(asyncio.CancelledError, GatewayError):
            await work
        raise GatewayError(CLIENT_CLOSED, "client closed the connection")
    finally:
        for task in (work, pumping, hangup):
            task.cancel()
        # Let them unwind now, so nothing outlives the request.
        await asyncio.gather(work, pumping, hangup, return_exceptions=True)
