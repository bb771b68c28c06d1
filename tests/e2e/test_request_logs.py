"""One JSON log line per request on each hop, with the same request and trace ids (SPEC §10)."""

from __future__ import annotations

import json
from pathlib import Path
from secrets import token_hex
from typing import Any

import httpx

from gateway.tests.factories import create_tenant, wait_for
from kit.procs import ServiceProcess
from kit.stacks import Secrets
from kit.testing import StartService

FIELDS = {
    "time",
    "level",
    "service",
    "request_id",
    "tenant_id",
    "method",
    "route",
    "status",
    "duration_ms",
    "trace_id",
}


def json_lines(path: Path) -> list[dict[str, Any]]:
    """Every line of a process's output, each of which must be one JSON object."""
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    return [json.loads(line) for line in lines]


def request_line(process: ServiceProcess, request_id: str) -> dict[str, Any] | None:
    found = [
        line for line in json_lines(process.child.log_path) if line.get("request_id") == request_id
    ]
    assert len(found) <= 1, found  # one line per request per process
    return found[0] if found else None


def test_gateway_and_service_log_one_json_line_each_with_the_same_ids(
    start_service: StartService, secrets: Secrets
) -> None:
    users = start_service("users")
    gateway = start_service("gateway", {"USERS_URL": users.url})
    admin = httpx.Client(
        base_url=gateway.url, headers={"Authorization": f"Bearer {secrets.admin_token}"}
    )
    tenant = create_tenant(admin)
    trace_id = token_hex(16)
    request_id = f"logs-{token_hex(6)}"
    response = httpx.post(
        f"{gateway.url}/users/",
        json={"name": "Ada", "email": f"{request_id}@example.com"},
        headers={
            "Authorization": f"Bearer {tenant['api_key']}",
            "X-Request-ID": request_id,
            "traceparent": f"00-{trace_id}-{token_hex(8)}-01",
        },
    )
    assert response.status_code == 201, response.text
    user_id = response.json()["id"]

    wait_for(lambda: request_line(users, request_id) is not None, within=5)
    wait_for(lambda: request_line(gateway, request_id) is not None, within=5)
    hop1, hop2 = request_line(gateway, request_id), request_line(users, request_id)
    assert hop1 is not None and hop2 is not None
    for line, service, route in (
        (hop1, "gateway", "/users/*"),
        (hop2, "users-service", "/users"),
    ):
        assert line.keys() >= FIELDS, line
        assert line["service"] == service
        assert line["route"] == route  # a template, not the raw path
        assert line["trace_id"] == trace_id  # the caller's trace, continued on both hops
        assert line["tenant_id"] == tenant["id"]
        assert (line["method"], line["status"], line["level"]) == ("POST", 201, "INFO")
        assert isinstance(line["duration_ms"], float) and line["duration_ms"] > 0
    # The gateway's time includes the service's.
    assert hop1["duration_ms"] >= hop2["duration_ms"]

    # A route template keeps ids out of the log line.
    got = httpx.get(
        f"{gateway.url}/users/{user_id}",
        headers={"Authorization": f"Bearer {tenant['api_key']}", "X-Request-ID": request_id + "b"},
    )
    assert got.status_code == 200
    wait_for(lambda: request_line(users, request_id + "b") is not None, within=5)
    line = request_line(users, request_id + "b")
    assert line is not None and line["route"] == "/users/{user_id}"
    admin.close()


def test_a_refused_request_is_logged_without_a_tenant(
    start_service: StartService,
) -> None:
    users = start_service("users")
    gateway = start_service("gateway", {"USERS_URL": users.url})
    request_id = f"refused-{token_hex(6)}"
    response = httpx.get(
        f"{gateway.url}/users", headers={"X-API-Key": "tk_nonsense", "X-Request-ID": request_id}
    )
    assert response.status_code == 401
    wait_for(lambda: request_line(gateway, request_id) is not None, within=5)
    line = request_line(gateway, request_id)
    assert line is not None
    assert (line["status"], line["tenant_id"]) == (401, None)
    assert len(line["trace_id"]) == 32  # a trace started here when the caller sent none
    # Every line of both processes, uvicorn's own start-up lines included, is JSON.
    starts = [x for x in json_lines(gateway.child.log_path) if x.get("logger") == "uvicorn.error"]
    assert starts and all(x["service"] == "gateway" for x in starts)
    assert json_lines(users.child.log_path)
