"""One socket write per answer: uvicorn's httptools protocol with its writes coalesced.

uvicorn writes a response's status line and headers, then its body, as two `send` calls, so
the peer (a client, or the gateway's upstream connection) wakes up and parses twice per
answer. Every process here serves small answers whose start and body are sent in the same
turn of the event loop: a first write (the headers) is held until the next one (the body)
and both are sent together, at the moment uvicorn sent the body alone; one syscall and one
wake-up of the peer instead of two (issue 10's profile). A write with no follower in its turn
leaves at the turn's end, so streamed answers still go out chunk by chunk.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class CoalescingTransport:
    """Wraps a transport: an answer's headers and body leave in one `write`."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] = []

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._pending:
            # The body after its headers: both leave now, when uvicorn sent the body alone.
            self._pending.append(bytes(data))
            self.flush()
            return
        # A first write (an answer's headers) waits for the next one, or for the turn's end.
        self._pending.append(bytes(data))
        self._loop.call_soon(self.flush)

    def flush(self) -> None:
        """Send what this turn wrote (as one write); nothing when it was already sent."""
        if not self._pending:
            return
        data = self._pending[0] if len(self._pending) == 1 else b"".join(self._pending)
        self._pending.clear()
        if not self._transport.is_closing():
            self._transport.write(data)

    def close(self) -> None:
        self.flush()  # `Connection: close` answers: their bytes go out before the FIN
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        # Everything else (is_closing, pause_reading, get_extra_info, abort...) as is.
        return getattr(self._transport, name)


class CoalescingHttpTools(HttpToolsProtocol):
    """uvicorn's httptools protocol (`uvicorn.Config(http=...)`) over a coalescing transport."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        # After the base class read what it needs from the real transport (addresses, TLS).
        self.transport = CoalescingTransport(transport, self.loop)  # type: ignore[assignment]
