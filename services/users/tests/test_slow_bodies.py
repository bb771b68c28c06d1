"""Slow bodies cost the sender, not the database: the body is whole before any query runs."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import psycopg2.extensions
import pytest

from services.users.tests.conftest import SignedClient, owner_rows

# More than the pool (20 connections): on code that queries before the body is in, these
# alone would pin every connection `idle in transaction`.
TRICKLERS = 25
BODY_BYTES = 200


@pytest.fixture
def users(start_service: Callable[..., Any], secrets: Any) -> Iterator[SignedClient]:
    """A users service of this test's own: the trickle must not slow any other test."""
    service = start_service("users")
    with httpx.Client(base_url=service.url, timeout=10) as client:
        yield SignedClient(client, secrets.signing_secret)


def _padded_body(name: str) -> bytes:
    body = json.dumps({"name": name}).encode()
    return body[:-1] + b" " * (BODY_BYTES - len(body)) + b"}"


def _open_trickle(api: SignedClient, tenant: int, user_id: int) -> socket.socket:
    """PATCH headers with Content-Length: 200, and the first byte of the body only."""
    url = httpx.URL(str(api.client.base_url))
    target = f"/users/{user_id}"
    headers = {
        # Signed over the whole body it will (eventually) send: the MAC covers its SHA-256.
        **api.headers("PATCH", target, tenant, body=_padded_body("Trickled")),
        "Host": f"{url.host}:{url.port}",
        "Content-Type": "application/json",
        "Content-Length": str(BODY_BYTES),
        "Connection": "close",
    }
    head = f"PATCH {target} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    sock = socket.create_connection((url.host, url.port or 80), timeout=10)
    sock.sendall(head.encode() + b"\r\n" + _padded_body("Trickled")[:1])
    return sock


def _read_to_close(sock: socket.socket) -> str:
    """The whole answer (the request said `Connection: close`)."""
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks).decode()


def _idle_in_transaction(owner: psycopg2.extensions.connection) -> int:
    rows = owner_rows(
        owner,
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'users-service' "
        "AND state LIKE 'idle in transaction%%' AND datname = current_database()",
    )
    return int(rows[0][0])


def test_trickled_bodies_hold_no_connection_and_other_tenants_keep_being_served(
    users: SignedClient, owner: psycopg2.extensions.connection, make_tenant: Callable[[], int]
) -> None:
    attacker, neighbour = make_tenant(), make_tenant()
    made = users.request("POST", "/users", attacker, json={"name": "Target"})
    assert made.status_code == 201, made.text
    users.request("POST", "/users", neighbour, json={"name": "Neighbour"}).raise_for_status()

    sockets = [_open_trickle(users, attacker, made.json()["id"]) for _ in range(TRICKLERS)]
    stop = threading.Event()

    def trickle() -> None:
        # One more byte per connection every half second, never the whole body.
        sent = 1
        while not stop.wait(0.5) and sent < BODY_BYTES - 1:
            for sock in sockets:
                sock.sendall(_padded_body("Trickled")[sent : sent + 1])
            sent += 1

    trickler = threading.Thread(target=trickle, daemon=True)
    trickler.start()
    try:
        time.sleep(1.0)  # every trickler has been accepted and is mid-body
        deadline = time.monotonic() + 4.0
        answers = []
        while time.monotonic() < deadline:
            started = time.monotonic()
            response = users.request("GET", "/users", neighbour)
            answers.append((response.status_code, time.monotonic() - started))
            assert _idle_in_transaction(owner) == 0
            time.sleep(0.2)
    finally:
        stop.set()
        trickler.join()
        for sock in sockets:
            sock.close()
    assert [status for status, _ in answers] == [200] * len(answers)
    assert max(took for _, took in answers) < 2.5  # the pool timeout (3 s) never hit
    # The target was never changed by a half-sent body.
    assert users.request("GET", f"/users/{made.json()['id']}", attacker).json()["name"] == "Target"


def test_a_slow_but_complete_body_is_applied(
    users: SignedClient, make_tenant: Callable[[], int]
) -> None:
    tenant = make_tenant()
    made = users.request("POST", "/users", tenant, json={"name": "Before"}).json()
    sock = _open_trickle(users, tenant, made["id"])
    try:
        rest = _padded_body("Trickled")[1:]
        for part in (rest[:100], rest[100:]):
            time.sleep(0.3)
            sock.sendall(part)
        answer = _read_to_close(sock)
    finally:
        sock.close()
    assert answer.startswith("HTTP/1.1 200"), answer
    assert json.loads(answer.split("\r\n\r\n", 1)[1])["name"] == "Trickled"


def test_a_body_over_one_mib_is_refused_without_a_query(
    users: SignedClient, make_tenant: Callable[[], int]
) -> None:
    tenant = make_tenant()
    big = json.dumps({"name": "x" * (1024 * 1024)})
    response = users.request(
        "POST", "/users", tenant, content=big, headers={"content-type": "application/json"}
    )
    assert response.status_code == 413
    assert response.json() == {"detail": "request body larger than 1 MiB"}
    assert users.request("GET", "/users", tenant).json() == []
