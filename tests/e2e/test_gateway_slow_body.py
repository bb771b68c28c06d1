"""A client that trickles its body gets 408 and costs only itself (SPEC §5, issue 9 item 1).

Real sockets against the real gateway and users service: the trickled request never reaches
the service, and another tenant is served normally meanwhile.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import httpx

from gateway.tests.factories import bearer, create_tenant

TIMEOUT_SECONDS = 1.0
TRICKLERS = 8


def _trickle(url: str, *, api_key: str, body: bytes, results: list[tuple[float, bytes]]) -> None:
    """Send the headers, then one byte every 0.25 s; record how long until the answer."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
        head = (
            f"POST /users HTTP/1.1\r\nHost: {parts.netloc}\r\nAuthorization: Bearer {api_key}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        sock.sendall(head.encode())
        started = time.monotonic()
        sock.settimeout(0.25)
        answer = b""
        for byte in body:
            try:
                sock.sendall(bytes([byte]))
            except OSError:  # the gateway hung up after answering
                break
            try:
                answer = sock.recv(65536)
            except TimeoutError:
                continue
            if answer:
                break
        sock.settimeout(5)
        while b"\r\n\r\n" not in answer or not answer.endswith(b"}"):
            more = sock.recv(65536)
            if not more:
                break
            answer += more
        results.append((time.monotonic() - started, answer))


def test_trickled_body_is_408_sends_nothing_upstream_and_spares_other_tenants(
    start_service: Callable[..., Any], admin: httpx.Client
) -> None:
    gateway = start_service("gateway", env={"REQUEST_BODY_TIMEOUT_SECONDS": str(TIMEOUT_SECONDS)})
    slow, quiet = create_tenant(admin), create_tenant(admin)
    body = json.dumps({"name": "trickled " + "x" * 40}).encode()
    results: list[tuple[float, bytes]] = []
    threads = [
        threading.Thread(
            target=_trickle,
            args=(gateway.url,),
            kwargs={"api_key": slow["api_key"], "body": body, "results": results},
        )
        for _ in range(TRICKLERS)
    ]
    for thread in threads:
        thread.start()
    # While every trickler holds its connection open, the quiet tenant is served normally.
    served = []
    with httpx.Client(base_url=gateway.url, headers=bearer(quiet["api_key"]), timeout=5) as c:
        deadline = time.monotonic() + TIMEOUT_SECONDS * 0.8
        while time.monotonic() < deadline:
            response = c.post("/users", json={"name": "quiet"})
            served.append(response.status_code)
        for thread in threads:
            thread.join(timeout=15)
        assert c.get("/users?limit=500").status_code == 200
    assert served and set(served) == {201}, served

    assert len(results) == TRICKLERS
    for took, answer in results:
        head, _, payload = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 408"), answer[:200]
        assert b"connection: close" in head.lower()
        assert json.loads(payload)["detail"].startswith("request body not received")
        assert TIMEOUT_SECONDS <= took < TIMEOUT_SECONDS + 2
    # Nothing of the trickled requests reached the users service.
    listed = httpx.get(f"{gateway.url}/users", headers=bearer(slow["api_key"]), timeout=5)
    assert listed.status_code == 200 and listed.json() == []
