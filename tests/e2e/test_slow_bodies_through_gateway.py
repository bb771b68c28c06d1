"""Issue 9's slow-body attack through the gateway: the neighbours keep being served.

25 connections send `PATCH /users/{id}` headers with `Content-Length: 200` through the
gateway, then trickle the body a byte at a time. On code that looked the user up before
reading the body, each held a users-service connection `idle in transaction`, the pool (20)
ran dry, and every other tenant got 503 after 3 s.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
import uuid
from typing import Any

import httpx
import psycopg2

from kit.testing import Database

TRICKLERS = 25
BODY_BYTES = 200


def _tenant(admin: httpx.Client) -> dict[str, Any]:
    created = admin.post("/admin/tenants", json={"name": f"e2e-slow-{uuid.uuid4().hex[:10]}"})
    assert created.status_code == 201, created.text
    body: dict[str, Any] = created.json()
    return body


def _idle_in_transaction(database: Database) -> int:
    conn = psycopg2.connect(database.url)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE state LIKE 'idle in transaction%%' "
                "AND application_name = 'users-service' AND datname = current_database()"
            )
            row = cur.fetchone()
    finally:
        conn.close()
    assert row is not None
    return int(row[0])


def test_trickled_bodies_through_the_gateway_do_not_starve_other_tenants(
    gateway: Any, admin: httpx.Client, database: Database
) -> None:
    attacker, neighbour = _tenant(admin), _tenant(admin)
    url = httpx.URL(gateway.url)
    with (
        httpx.Client(
            base_url=gateway.url, headers={"X-API-Key": attacker["api_key"]}, timeout=10
        ) as attacking,
        httpx.Client(
            base_url=gateway.url, headers={"X-API-Key": neighbour["api_key"]}, timeout=10
        ) as neighbouring,
    ):
        target = attacking.post("/users", json={"name": "Target"})
        assert target.status_code == 201, target.text
        assert neighbouring.post("/users", json={"name": "Neighbour"}).status_code == 201
        head = (
            f"PATCH /users/{target.json()['id']} HTTP/1.1\r\nHost: {url.host}:{url.port}\r\n"
            f"X-API-Key: {attacker['api_key']}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {BODY_BYTES}\r\n\r\n{{"
        ).encode()
        sockets = [
            socket.create_connection((url.host, url.port or 80), timeout=10)
            for _ in range(TRICKLERS)
        ]
        stop = threading.Event()

        def trickle() -> None:
            for sock in sockets:
                sock.sendall(head)
            while not stop.wait(0.5):
                for sock in sockets:
                    # Refused or timed out by the gateway (429, 408): its business.
                    with contextlib.suppress(OSError):
                        sock.sendall(b" ")

        trickler = threading.Thread(target=trickle, daemon=True)
        trickler.start()
        try:
            time.sleep(1.5)
            answers = []
            for _ in range(8):
                started = time.monotonic()
                response = neighbouring.get("/users")
                answers.append((response.status_code, time.monotonic() - started))
                assert _idle_in_transaction(database) == 0
                time.sleep(0.3)
        finally:
            stop.set()
            trickler.join()
            for sock in sockets:
                sock.close()
    assert [status for status, _ in answers] == [200] * len(answers)
    assert max(took for _, took in answers) < 2.5  # never the pool's 3 s timeout
