"""The hostile tenants of `make load-noisy`'s attack scenarios (issue 9), as Locust users.

Every attacker request is named `[<who>] ... (flood)`, so it is kept out of the quiet
tenants' figures. An attacker request "gets through" when the stack served it; it "fails"
when the stack refused it (408, 429, 503, 401 for a junk key): refusals are the protection.
"""

from __future__ import annotations

import secrets
import socket
import time
from typing import Any
from urllib.parse import urlsplit

from locust import FastHttpUser, User, constant, constant_throughput, task
from locust.exception import StopUser

from loadtests.state import STATE
from loadtests.verdict import FLOOD_SUFFIX

SLOW_BODY_BYTES = 200


def _attacking_tenant() -> Any:
    """The tenant the attack runs as (LOAD_FLOOD_TENANT); stop the user if there is none."""
    settings = STATE.settings
    label = settings.LOAD_FLOOD_TENANT if settings else None
    STATE.wait_for_tenants()
    tenant = STATE.tenant(label) if label else None
    if tenant is None:
        raise StopUser()
    return tenant


class SlowBodyUser(User):
    """(a) Sends PATCH headers with `Content-Length: 200`, then one byte of body a second."""

    attacker = True
    fixed_count = 30
    wait_time = constant(0)

    def on_start(self) -> None:
        self.tenant = _attacking_tenant()
        parts = urlsplit(self.host or "")
        self.address = (parts.hostname or "127.0.0.1", parts.port or 80)

    @task
    def trickle(self) -> None:
        """One slow request: trickle for LOAD_SLOW_BODY_SECONDS, then finish the body."""
        settings = STATE.settings
        trickle_seconds = settings.LOAD_SLOW_BODY_SECONDS if settings else 12.0
        body = b'{"name": "slow"' + b" " * (SLOW_BODY_BYTES - 16) + b"}"
        head = (
            f"PATCH /users/1 HTTP/1.1\r\nHost: {self.address[0]}:{self.address[1]}\r\n"
            f"Authorization: Bearer {self.tenant.api_key}\r\n"
            "Content-Type: application/json\r\n"
            f"Content-Length: {SLOW_BODY_BYTES}\r\nConnection: close\r\n\r\n"
        ).encode()
        started = time.monotonic()
        status = 0
        error: Exception | None = None
        try:
            with socket.create_connection(self.address, timeout=60) as sock:
                sock.sendall(head)
                sent = 0
                # The socket is gevent's (Locust patches it): a wait here blocks no one else.
                while sent < SLOW_BODY_BYTES - 1 and time.monotonic() - started < trickle_seconds:
                    sock.sendall(body[sent : sent + 1])
                    sent += 1
                    if _answered(sock, timeout=1.0):
                        break
                else:
                    sock.sendall(body[sent:])
                status = _status(sock.recv(4096))
        except OSError as exc:
            error = exc
        elapsed_ms = (time.monotonic() - started) * 1000
        if error is None and status in (408, 413, 429, 503):
            error = RuntimeError(f"{status} refused")
        elif error is None and status == 0:
            error = RuntimeError("no answer")
        self.environment.events.request.fire(
            request_type="PATCH",
            name=f"[{self.tenant.label}] PATCH /users/{{id}} slow body{FLOOD_SUFFIX}",
            response_time=elapsed_ms,
            response_length=0,
            exception=error,
            context={},
        )


def _answered(sock: socket.socket, *, timeout: float) -> bool:
    """True when the server has answered (or closed) while we wait `timeout` seconds."""
    sock.settimeout(timeout)
    try:
        sock.recv(1, socket.MSG_PEEK)  # b"" (closed) counts as answered too
    except TimeoutError:
        return False
    finally:
        sock.settimeout(60)
    return True


def _status(head: bytes) -> int:
    """The status code of a raw HTTP/1.1 answer, 0 when there is none."""
    parts = head.split(b" ", 2)
    return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0


class HeavyUser(FastHttpUser):
    """(b) The biggest page there is, back to back, within the tenant's rate limit."""

    attacker = True
    fixed_count = 48
    wait_time = constant(0)

    def on_start(self) -> None:
        self.tenant = _attacking_tenant()
        self.auth = {"Authorization": f"Bearer {self.tenant.api_key}"}

    @task
    def heavy_page(self) -> None:
        """GET /users?limit=500 of a tenant with hundreds of users."""
        with self.client.get(
            "/users?limit=500",
            headers=self.auth,
            name=f"[{self.tenant.label}] GET /users?limit=500{FLOOD_SUFFIX}",
            catch_response=True,
        ) as response:
            if response.status_code == 200:
                response.success()
            else:
                response.failure(f"{response.status_code} refused")


class RandomKeyUser(FastHttpUser):
    """(c) A fresh, well-formed, unknown API key on every request."""

    attacker = True
    fixed_count = 4
    wait_time = constant_throughput(100)

    @task
    def junk_key(self) -> None:
        """GET /users with `tk_` and 43 random characters nobody was ever given."""
        key = "tk_" + secrets.token_urlsafe(32)
        with self.client.get(
            "/users",
            headers={"Authorization": f"Bearer {key}"},
            name=f"[random-keys] GET /users{FLOOD_SUFFIX}",
            catch_response=True,
        ) as response:
            if response.status_code in (401, 429):
                response.failure(f"{response.status_code} refused")
            else:
                response.failure(f"{response.status_code} served a junk key")
