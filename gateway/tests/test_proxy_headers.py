"""What crosses the gateway: header filtering both ways, the route table, the request id."""

from __future__ import annotations

from multidict import CIMultiDict
from starlette.datastructures import Headers

from gateway.proxy import RouteTable, downstream_response_headers, upstream_request_headers
from gateway.requestid import choose_request_id


def raw(*pairs: tuple[str, str]) -> list[tuple[bytes, bytes]]:
    return [(k.lower().encode(), v.encode()) for k, v in pairs]


def test_hop_by_hop_and_connection_listed_request_headers_are_dropped() -> None:
    forwarded = upstream_request_headers(
        raw(
            ("Connection", "keep-alive, X-Secret-Hop"),
            ("X-Secret-Hop", "1"),
            ("Keep-Alive", "timeout=5"),
            ("TE", "trailers"),
            ("Trailer", "X-Checksum"),
            ("Transfer-Encoding", "chunked"),
            ("Upgrade", "websocket"),
            ("Proxy-Authorization", "Basic x"),
            ("Proxy-Anything", "1"),
            ("Accept", "application/json"),
            ("X-Custom", "kept"),
        )
    )
    assert sorted(forwarded.items()) == [("accept", "application/json"), ("x-custom", "kept")]


def test_client_credentials_and_tenant_context_are_never_forwarded() -> None:
    forwarded = upstream_request_headers(
        raw(
            ("Authorization", "Bearer tk_x"),
            ("X-API-Key", "tk_x"),
            ("X-Tenant-ID", "2"),
            ("X-Tenant-Timestamp", "1"),
            ("X-Tenant-Signature", "forged"),
            ("X_Tenant_Nonce", "0" * 32),
            ("x-tenant_extra", "placement=elsewhere"),
            ("X-HTTP-Method-Override", "DELETE"),
            ("Content-Length", "12"),
            ("Cookie", "session=1"),
        )
    )
    assert list(forwarded.items()) == [("cookie", "session=1")]


def test_response_keeps_repeated_headers_and_drops_hop_by_hop() -> None:
    upstream = CIMultiDict(
        [
            ("Set-Cookie", "a=1"),
            ("Set-Cookie", "b=2"),
            ("Connection", "X-Internal"),
            ("X-Internal", "secret"),
            ("Keep-Alive", "timeout=5"),
            ("Transfer-Encoding", "chunked"),
            ("Content-Type", "application/json"),
            ("Server", "uvicorn"),
        ]
    )
    assert downstream_response_headers(upstream) == [
        (b"set-cookie", b"a=1"),
        (b"set-cookie", b"b=2"),
        (b"content-type", b"application/json"),
    ]


def test_route_table_matches_whole_segments_longest_prefix_first() -> None:
    table = RouteTable({"/users": "http://u", "/users/admin": "http://ua", "/orders": "http://o"})
    assert table.match("/users") == "http://u"
    assert table.match("/users/") == "http://u"
    assert table.match("/users/7") == "http://u"
    assert table.match("/users/admin/x") == "http://ua"
    assert table.match("/usersx") is None
    assert table.match("/") is None


def test_sane_client_request_id_is_kept_anything_else_replaced() -> None:
    assert choose_request_id(Headers({"x-request-id": "abc-123:x.y_z"})) == "abc-123:x.y_z"
    for bad in ["", "has space", "a" * 129, "new\nline", "semi;colon"]:
        chosen = choose_request_id(Headers(raw=[(b"x-request-id", bad.encode())]))
        assert chosen != bad and len(chosen) == 32
    repeated = Headers(raw=[(b"x-request-id", b"a"), (b"x-request-id", b"b")])
    assert choose_request_id(repeated) not in ("a", "b")
    assert choose_request_id(Headers({})) != choose_request_id(Headers({}))
