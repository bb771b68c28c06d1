"""Forwarding: the route table, header filtering both ways, and the streamed round trip."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Mapping

import aiohttp
from multidict import CIMultiDict, CIMultiDictProxy
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.types import Scope
from yarl import URL

from gateway.errors import GatewayError
from services.tenancy.dbcost import COST_HEADER
from services.tenancy.errors import PLACEMENT_CHANGED_HEADER
from services.tenancy.signing import CONTEXT_HEADERS

# Answers up to this size (by their Content-Length) are read whole and sent as one: a
# streamed answer costs a task group and a chunk loop per request (issue 10's profile).
BUFFERED_RESPONSE_BYTES = 64 * 1024
# Hop-by-hop headers (RFC 9110 §7.6.1) describe one connection, not the message.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "proxy-connection",
        "proxy-authenticate",
        "proxy-authorization",
    }
)
# Never forwarded upstream: the client's credentials and anything posing as the signed
# context (the gateway adds its own), plus headers the gateway sets itself.
_CLIENT_ONLY = frozenset(
    {
        "authorization",
        "x-api-key",
        *CONTEXT_HEADERS,
        "x-request-id",
        # The gateway sets it from the body it read and signed.
        "content-length",
        # Method overrides: an upstream framework that honours one would run a method
        # other than the one the gateway checked and signed.
        "x-http-method-override",
        "x-http-method",
        "x-method-override",
        "x-forwarded-for",
        "x-forwarded-host",
        "x-forwarded-proto",
        "forwarded",
        # The gateway answers a client's Expect itself (uvicorn sends 100 when the body is
        # read); passed on, it would make the upstream leg wait for a second 100.
        "expect",
    }
)
# Set by the gateway's own server on the way back.
# COST_HEADER: the service's database cost of the request, for the usage book only.
_UPSTREAM_ONLY = frozenset(
    {"date", "server", "x-request-id", COST_HEADER, PLACEMENT_CHANGED_HEADER}
)


class RouteTable:
    """Path prefix -> upstream origin, longest prefix first."""

    def __init__(self, routes: Mapping[str, str]) -> None:
        self._routes = sorted(routes.items(), key=lambda item: len(item[0]), reverse=True)

    @property
    def items(self) -> list[tuple[str, str]]:
        """(prefix, upstream) pairs."""
        return list(self._routes)

    def prefix_of(self, path: str) -> str | None:
        """The prefix a (decoded) path is routed by, for metrics labels."""
        for prefix, _upstream in self._routes:
            if path == prefix or path.startswith(prefix + "/"):
                return prefix
        return None

    def match(self, path: str) -> str | None:
        """The upstream for a (decoded) path: `/users`, `/users/` and `/users/7` match `/users`."""
        route = self.route(path)
        return route[1] if route else None

    def route(self, path: str) -> tuple[str, str] | None:
        """(prefix, upstream) for a path; the prefix is the destination that is signed."""
        for prefix, upstream in self._routes:
            if path == prefix or path.startswith(prefix + "/"):
                return prefix, upstream
        return None


def raw_path(scope: Scope) -> bytes:
    """The path exactly as the client sent it (still percent-encoded)."""
    return scope.get("raw_path") or scope["path"].encode()


def _connection_tokens(values: Iterable[str]) -> set[str]:
    return {t.strip().lower() for v in values for t in v.split(",") if t.strip()}


def _normal(name: str) -> str:
    # Many servers (CGI/WSGI-style environs, some proxies) read `X_Tenant_ID` as X-Tenant-ID.
    return name.lower().replace("_", "-")


def upstream_request_headers(raw: Iterable[tuple[bytes, bytes]]) -> CIMultiDict[str]:
    """The client's end-to-end headers, minus credentials, overrides and posed tenant context."""
    pairs = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in raw]
    listed = _connection_tokens(v for k, v in pairs if _normal(k) == "connection")
    drop = HOP_BY_HOP | _CLIENT_ONLY | {_normal(t) for t in listed}

    def kept(name: str) -> bool:
        normal = _normal(name)
        # x-tenant-* is the gateway's namespace: a future signed field is covered already.
        return not (normal in drop or normal.startswith(("proxy-", "x-tenant-", "x-forwarded-")))

    return CIMultiDict((k, v) for k, v in pairs if kept(k))


def downstream_response_headers(
    headers: CIMultiDictProxy[str] | CIMultiDict[str],
) -> list[tuple[bytes, bytes]]:
    """The upstream's end-to-end response headers, repeated ones (Set-Cookie) kept."""
    drop = HOP_BY_HOP | _UPSTREAM_ONLY | _connection_tokens(headers.getall("connection", []))
    return [
        (k.lower().encode("latin-1"), v.encode("latin-1"))
        for k, v in headers.items()
        if k.lower() not in drop and not k.lower().startswith("proxy-")
    ]


async def forward(
    request: Request,
    *,
    session: aiohttp.ClientSession,
    url: str,
    body: bytes | None,
    extra_headers: Mapping[str, str],
    response_headers: Mapping[str, str],
) -> Response:
    """Send the request (its body already read) upstream, pass the answer back; 503/504/502."""
    headers = upstream_request_headers(request.scope["headers"])
    headers.update(extra_headers)
    client = request.client.host if request.client else ""
    headers["X-Forwarded-For"] = client
    # From the scope: request.url would build (and parse) the whole URL for one field.
    headers["X-Forwarded-Proto"] = request.scope.get("scheme", "http")
    if "host" in request.headers:
        headers["X-Forwarded-Host"] = request.headers["host"]
    try:
        upstream_response = await session.request(
            request.method,
            # encoded=True: sent exactly as received, never re-quoted, so the signed target
            # is the one that arrives.
            URL(url, encoded=True),
            headers=headers,
            # aiohttp sets Content-Length from the bytes: the length that was signed.
            data=body,
            allow_redirects=False,
            # Forward exactly what the client sent: no added Accept-Encoding, User-Agent...
            skip_auto_headers=("User-Agent", "Accept-Encoding", "Content-Type", "Accept"),
        )
    except aiohttp.ClientConnectorError as exc:
        raise GatewayError(503, "upstream unavailable") from exc
    except aiohttp.ConnectionTimeoutError as exc:
        raise GatewayError(503, "upstream unavailable") from exc
    except (TimeoutError, aiohttp.SocketTimeoutError) as exc:
        raise GatewayError(504, "upstream timed out") from exc
    except aiohttp.ClientError as exc:
        # The upstream accepted the connection, then broke it: not the client's fault.
        raise GatewayError(502, "bad response from upstream") from exc

    request.state.db_cost = upstream_response.headers.get(COST_HEADER)
    request.state.placement_changed = PLACEMENT_CHANGED_HEADER in upstream_response.headers
    raw_headers = downstream_response_headers(upstream_response.headers) + [
        (k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in response_headers.items()
    ]
    response: Response
    if (upstream_response.content_length or 0) <= BUFFERED_RESPONSE_BYTES and (
        upstream_response.content_length is not None
    ):
        response = Response(await _read_whole(upstream_response), upstream_response.status)
    else:
        response = _streamed(upstream_response)
    response.raw_headers = raw_headers
    return response


async def _read_whole(upstream_response: aiohttp.ClientResponse) -> bytes:
    try:
        return await upstream_response.read()
    except (TimeoutError, aiohttp.SocketTimeoutError) as exc:
        raise GatewayError(504, "upstream timed out") from exc
    except aiohttp.ClientError as exc:
        raise GatewayError(502, "bad response from upstream") from exc
    finally:
        upstream_response.release()


def _streamed(upstream_response: aiohttp.ClientResponse) -> StreamingResponse:
    async def body() -> AsyncIterator[bytes]:
        try:
            async for chunk in upstream_response.content.iter_any():
                yield chunk
        finally:
            upstream_response.release()

    async def release() -> None:
        # async: a sync background task would cost a worker-thread hop per request.
        upstream_response.release()

    return StreamingResponse(
        body(), status_code=upstream_response.status, background=BackgroundTask(release)
    )


def make_session(
    *, timeout_seconds: float, trace_configs: list[aiohttp.TraceConfig] | None = None
) -> aiohttp.ClientSession:
    """The one pooled client of the process (aiohttp: measured ~4x httpx's proxy throughput)."""
    connector = aiohttp.TCPConnector(
        limit=512,
        # Below uvicorn's 5 s keep-alive: reusing a connection the upstream is closing
        # would fail a request that never reached it.
        keepalive_timeout=4,
        ttl_dns_cache=60,
    )
    return aiohttp.ClientSession(
        connector=connector,
        # Bodies pass through untouched: a gzip answer stays gzip, Content-Length stays true.
        auto_decompress=False,
        timeout=aiohttp.ClientTimeout(total=None, sock_connect=2, sock_read=timeout_seconds),
        # Cookies belong to clients, never to the gateway's shared session.
        cookie_jar=aiohttp.DummyCookieJar(),
        skip_auto_headers=("User-Agent",),
        trace_configs=trace_configs,
    )
