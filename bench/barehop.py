"""A bare Python hop: what a second process costs before any of the gateway's checks.

The same server stack as the gateway (uvicorn with httptools and uvloop, an aiohttp client
pool) passing each request to the users service as it came, signed headers included: no
key, tenant, rate limit, admission, signing, metrics or log line. `make bench` puts it
beside the gateway, so that "gateway / direct" splits into what the hop costs (bare hop /
direct) and what the gateway's work costs (gateway / bare hop).

`python -m bench.barehop` listens on BAREHOP_HOST:BAREHOP_PORT and forwards to
BAREHOP_UPSTREAM; `bare_hop()` starts it for the bench.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import aiohttp
import uvicorn
from starlette.types import Receive, Scope, Send

from kit.procs import start_service

# Not forwarded: the connection's own headers (aiohttp sets Host and keeps its connection).
_HOP = frozenset({b"host", b"connection", b"keep-alive", b"transfer-encoding"})


def make_app(upstream: str) -> object:
    """The ASGI app: one pooled aiohttp session for the process, made in its lifespan."""
    sessions: list[aiohttp.ClientSession] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] == "lifespan.startup":
                sessions.append(aiohttp.ClientSession(auto_decompress=False))
                await send({"type": "lifespan.startup.complete"})
            await sessions[0].close()
            await send({"type": "lifespan.shutdown.complete"})
            return
        headers = [(k.decode(), v.decode()) for k, v in scope["headers"] if k not in _HOP]
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        target = scope["raw_path"].decode()
        if scope["query_string"]:
            target += "?" + scope["query_string"].decode()
        async with sessions[0].request(
            scope["method"],
            upstream + target,
            headers=headers,
            data=body or None,
            skip_auto_headers=("User-Agent", "Accept-Encoding", "Accept", "Content-Type"),
        ) as answer:
            content = await answer.read()
            kept = [
                (k.lower().encode(), v.encode())
                for k, v in answer.headers.items()
                if k.lower().encode() not in _HOP and k.lower() != "content-length"
            ]
            await send(
                {
                    "type": "http.response.start",
                    "status": answer.status,
                    "headers": [*kept, (b"content-length", str(len(content)).encode())],
                }
            )
            await send({"type": "http.response.body", "body": content})

    return app


@contextmanager
def bare_hop(upstream_url: str, *, log_dir: Path) -> Iterator[str]:
    """The bare hop in front of `upstream_url`, running until the block ends: its URL."""
    process = start_service(
        "barehop",
        env={"BAREHOP_UPSTREAM": upstream_url},
        argv=[sys.executable, "-m", "bench.barehop"],
        log_dir=log_dir,
        ready_path="/healthz",  # the users service's, through the hop
    )
    try:
        yield process.url
    finally:
        process.stop()


def main() -> None:
    uvicorn.run(
        make_app(os.environ["BAREHOP_UPSTREAM"].rstrip("/")),  # type: ignore[arg-type]
        host=os.environ.get("BAREHOP_HOST", "127.0.0.1"),
        port=int(os.environ["BAREHOP_PORT"]),
        http="httptools",
        loop="uvloop",
        log_level="warning",
        access_log=False,
        server_header=False,
    )


if __name__ == "__main__":
    main()
