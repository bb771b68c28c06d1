"""The gateway as a proxy, against a real upstream process that checks the signature."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from gateway.tests.conftest import StartGateway
from gateway.tests.factories import bearer, create_tenant
from kit.servers import free_port

MiB = 1024 * 1024


@pytest.fixture
def tenant(echo_admin: httpx.Client) -> dict[str, object]:
    return create_tenant(echo_admin)


def key_headers(tenant: dict[str, object]) -> dict[str, str]:
    return bearer(str(tenant["api_key"]))


def echoed_headers(response: httpx.Response) -> dict[str, list[str]]:
    seen: dict[str, list[str]] = {}
    for name, value in response.json()["headers"]:
        seen.setdefault(name, []).append(value)
    return seen


def test_request_reaches_upstream_signed_for_the_credentials_tenant(
    echo_client: httpx.Client, tenant: dict[str, object]
) -> None:
    response = echo_client.get("/users", headers=key_headers(tenant))
    assert response.status_code == 200, response.text
    assert response.json()["tenant_id"] == tenant["id"]


def test_raw_path_and_query_are_forwarded_exactly(
    echo_client: httpx.Client, tenant: dict[str, object]
) -> None:
    target = "/users/a%2Fb/%7Ex?q=a%20b&q=%2B&empty="
    response = echo_client.get(target, headers=key_headers(tenant))
    assert response.status_code == 200, response.text
    assert response.json()["target"] == target


def test_users_with_and_without_trailing_slash_both_go_through_without_redirect(
    echo_client: httpx.Client, tenant: dict[str, object]
) -> None:
    for path in ("/users", "/users/"):
        response = echo_client.get(path, headers=key_headers(tenant))
        assert response.status_code == 200
        assert response.json()["target"] == path


def test_method_and_body_are_forwarded(
    echo_client: httpx.Client, tenant: dict[str, object]
) -> None:
    body = b"name=Alice&email=a%40example.com"
    response = echo_client.request(
        "PATCH",
        "/users/1",
        content=body,
        headers={**key_headers(tenant), "Content-Type": "application/x-www-form-urlencoded"},
    )
    echoed = response.json()
    assert (echoed["method"], echoed["body_length"]) == ("PATCH", len(body))
    assert echoed_headers(response)["content-type"] == ["application/x-www-form-urlencoded"]


def test_credentials_hop_by_hop_and_client_tenant_context_do_not_reach_upstream(
    echo_client: httpx.Client, tenant: dict[str, object]
) -> None:
    response = echo_client.get(
        "/users",
        headers={
            **key_headers(tenant),
            "X-Tenant-ID": str(tenant["id"]),
            "X-Tenant-Timestamp": "1",
            "X-Tenant-Signature": "forged",
            "Connection": "X-Hop",
            "X-Hop": "secret",
            "Keep-Alive": "timeout=5",
            "Proxy-Authorization": "Basic eDp5",
            "X-End-To-End": "kept",
        },
    )
    assert response.status_code == 200, response.text
    seen = echoed_headers(response)
    for name in (
        "authorization",
        "x-api-key",
        "x-hop",
        "keep-alive",
        "proxy-authorization",
        "connection",
    ):
        assert name not in seen, name
    assert seen["x-end-to-end"] == ["kept"]
    assert seen["x-tenant-id"] == [str(tenant["id"])]
    assert seen["x-tenant-signature"] != ["forged"]


def test_api_key_header_is_not_forwarded(
    echo_client: httpx.Client, tenant: dict[str, object]
) -> None:
    response = echo_client.get("/users", headers={"X-API-Key": str(tenant["api_key"])})
    assert response.status_code == 200
    assert "x-api-key" not in echoed_headers(response)


def test_upstream_response_comes_back_minus_hop_by_hop(
    echo_client: httpx.Client, tenant: dict[str, object]
) -> None:
    response = echo_client.get("/users?status=207", headers=key_headers(tenant))
    assert response.status_code == 207
    assert response.headers.get_list("set-cookie") == ["a=1", "b=2"]
    assert response.headers["x-upstream"] == "echo"
    assert "keep-alive" not in response.headers


def test_sane_request_id_is_kept_forwarded_and_echoed(
    echo_client: httpx.Client, tenant: dict[str, object]
) -> None:
    response = echo_client.get(
        "/users", headers={**key_headers(tenant), "X-Request-ID": "req-42.a:b"}
    )
    assert response.headers["x-request-id"] == "req-42.a:b"
    assert response.json()["request_id"] == "req-42.a:b"


def test_insane_request_id_is_replaced_and_the_new_one_echoed(
    echo_client: httpx.Client, tenant: dict[str, object]
) -> None:
    response = echo_client.get(
        "/users", headers={**key_headers(tenant), "X-Request-ID": "a b<script>"}
    )
    assert response.status_code == 200
    generated = response.headers["x-request-id"]
    assert generated != "a b<script>"
    assert response.json()["request_id"] == generated


def test_refusals_also_carry_a_request_id(echo_client: httpx.Client) -> None:
    response = echo_client.get("/users", headers={"X-Request-ID": "refused-1"})
    assert response.status_code == 401
    assert response.headers["x-request-id"] == "refused-1"


def test_body_of_exactly_one_mib_passes(
    echo_client: httpx.Client, tenant: dict[str, object]
) -> None:
    response = echo_client.post("/users", content=b"x" * MiB, headers=key_headers(tenant))
    assert response.status_code == 200
    assert response.json()["body_length"] == MiB


def test_body_over_one_mib_is_413_by_content_length(
    echo_client: httpx.Client, tenant: dict[str, object]
) -> None:
    response = echo_client.post("/users", content=b"x" * (MiB + 1), headers=key_headers(tenant))
    assert response.status_code == 413
    assert response.json() == {"detail": "request body larger than 1 MiB"}


def test_chunked_body_over_one_mib_is_413_while_streaming(
    echo_client: httpx.Client, tenant: dict[str, object]
) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(17):
            yield b"x" * (64 * 1024)
        yield b"x"

    response = echo_client.post("/users", content=chunks(), headers=key_headers(tenant))
    assert response.status_code == 413


def test_unknown_route_prefix_is_404(echo_client: httpx.Client, tenant: dict[str, object]) -> None:
    for path in ("/orders", "/usersx", "/"):
        response = echo_client.get(path, headers=key_headers(tenant))
        assert response.status_code == 404, path
        assert response.json() == {"detail": "no route for this path"}


def test_dot_segments_are_refused(echo_client: httpx.Client, tenant: dict[str, object]) -> None:
    response = echo_client.get("/users/%2E%2E/admin", headers=key_headers(tenant))
    assert response.status_code == 400


def test_second_route_is_a_config_change(
    echo_client: httpx.Client, tenant: dict[str, object]
) -> None:
    response = echo_client.get("/echo/anything", headers=key_headers(tenant))
    assert response.status_code == 200
    assert response.json()["target"] == "/echo/anything"


def test_slow_upstream_is_504(
    start_gateway: StartGateway, echo_admin: httpx.Client, tenant: dict[str, object]
) -> None:
    gateway = start_gateway({"UPSTREAM_TIMEOUT_SECONDS": "1"})
    response = httpx.get(f"{gateway.url}/users?delay=3", headers=key_headers(tenant), timeout=10)
    assert response.status_code == 504
    assert response.json() == {"detail": "upstream timed out"}


def test_upstream_down_is_503_within_five_seconds(
    start_gateway: StartGateway, tenant: dict[str, object]
) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    gateway = start_gateway({"GATEWAY_ROUTES": f"/users={dead}"}, ready_path="/healthz")
    started = time.monotonic()
    response = httpx.get(f"{gateway.url}/users", headers=key_headers(tenant), timeout=10)
    assert response.status_code == 503
    assert time.monotonic() - started < 5
    ready = httpx.get(f"{gateway.url}/readyz", timeout=10)
    assert ready.status_code == 503
    assert ready.json()["upstreams"] == {"/users": "down"}


def test_hanging_upstream_is_504_not_a_hang(
    start_gateway: StartGateway, tenant: dict[str, object], hanging_upstream: str
) -> None:
    gateway = start_gateway(
        {"GATEWAY_ROUTES": f"/users={hanging_upstream}", "UPSTREAM_TIMEOUT_SECONDS": "1"},
        ready_path="/healthz",
    )
    response = httpx.get(f"{gateway.url}/users", headers=key_headers(tenant), timeout=10)
    assert response.status_code == 504


@pytest.fixture
def garbage_upstream() -> Iterator[str]:
    """The URL of an upstream that reads a request and answers with something not HTTP."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(2)
                with contextlib.suppress(OSError):
                    conn.recv(65536)
                    conn.sendall(b"this is not HTTP at all\r\n\r\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}"
    stop.set()
    thread.join()
    server.close()


def test_an_upstream_answering_garbage_is_502(
    start_gateway: StartGateway, tenant: dict[str, object], garbage_upstream: str
) -> None:
    gateway = start_gateway({"GATEWAY_ROUTES": f"/users={garbage_upstream}"}, ready_path="/healthz")
    started = time.monotonic()
    response = httpx.get(f"{gateway.url}/users", headers=key_headers(tenant), timeout=10)
    assert response.status_code == 502
    assert response.json() == {"detail": "bad response from upstream"}
    assert time.monotonic() - started < 5
