"""Per-tenant metrics and usage through a real gateway and users service (SPEC §4, §10)."""

from __future__ import annotations

import json
import time
import uuid

import httpx
from prometheus_client.parser import text_string_to_metric_families

from gateway.tests.test_cli import cli
from kit.procs import ServiceProcess
from kit.servers import RedisServer
from kit.testing import Database, Secrets, StartService


def _samples(
    url: str, name: str, *, token: str | None = None
) -> dict[tuple[tuple[str, str], ...], float]:
    # The gateway's public /metrics needs the admin token; a service's does not.
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = httpx.get(f"{url}/metrics", headers=headers, timeout=10)
    assert response.status_code == 200, response.text
    text = response.text
    return {
        tuple(sorted(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name
    }


def _admin(url: str, secrets: Secrets) -> httpx.Client:
    return httpx.Client(
        base_url=url, headers={"Authorization": f"Bearer {secrets.admin_token}"}, timeout=10
    )


def _tenant(admin: httpx.Client) -> tuple[int, dict[str, str]]:
    created = admin.post("/admin/tenants", json={"name": f"observe-{uuid.uuid4().hex[:10]}"})
    assert created.status_code == 201, created.text
    body = created.json()
    return int(body["id"]), {"Authorization": f"Bearer {body['api_key']}"}


def _work(url: str, key: dict[str, str], n: int) -> int:
    """n requests that each reach PostgreSQL; returns the response bytes the client got."""
    received = 0
    with httpx.Client(base_url=url, headers=key, timeout=10) as client:
        for i in range(n):
            if i % 2:
                r = client.get("/users")
            else:
                r = client.post(
                    "/users", json={"email": f"{uuid.uuid4().hex}@example.com", "name": "u"}
                )
            assert r.status_code in (200, 201), r.text
            assert "x-tenantkit-db-cost" not in r.headers  # the service's note stays inside
            received += len(r.content)
    return received


def test_usage_counts_every_request_exactly_across_a_gateway_restart(
    start_service: StartService,
    secrets: Secrets,
    users_service: ServiceProcess,
    database: Database,
    redis_server: RedisServer,
) -> None:
    gateway = start_service("gateway")
    with _admin(gateway.url, secrets) as admin:
        tenant_id, key = _tenant(admin)
        other_id, other_key = _tenant(admin)
        received = _work(gateway.url, key, 23)
        _work(gateway.url, other_key, 4)
    gateway.stop()  # SIGTERM: what was counted in memory reaches Redis first

    gateway = start_service("gateway")
    received += _work(gateway.url, key, 14)
    with _admin(gateway.url, secrets) as admin:
        usage = admin.get(f"/admin/tenants/{tenant_id}/usage", params={"window_seconds": 600})
        assert usage.status_code == 200, usage.text
        body = usage.json()
        assert body["requests"] == 37
        assert body["errors"] == 0
        assert body["bytes"] == received
        assert body["db_seconds"] > 0
        # 7 + 12 inserts written, and every GET read back at least the rows written before it.
        assert body["rows"] >= 19 + 11
        assert body["p95_ms"] > 0
        assert body["window_seconds"] == 600
        assert admin.get(f"/admin/tenants/{other_id}/usage").json()["requests"] == 4
        # The CLI reads the same counts straight from Redis.
        run = cli(
            "tenants",
            "usage",
            str(tenant_id),
            "--window-seconds",
            "600",
            database=database,
            redis=redis_server,
        )
        assert run.returncode == 0, run.stderr
        assert json.loads(run.stdout) == body
        # Hostile input: another tenant's usage is not reachable without the admin token,
        # unknown tenants are 404, silly windows 422.
        assert (
            httpx.get(f"{gateway.url}/admin/tenants/{tenant_id}/usage", headers=key).status_code
            == 401
        )
        assert admin.get("/admin/tenants/999999999/usage").status_code == 404
        assert admin.get(f"/admin/tenants/{tenant_id}/usage?window_seconds=0").status_code == 422
        assert admin.get(f"/admin/tenants/{tenant_id}/usage?window_seconds=x").status_code == 422


def test_only_the_top_k_tenants_get_their_own_label(
    start_service: StartService, secrets: Secrets, users_service: ServiceProcess
) -> None:
    gateway = start_service("gateway", env={"METRICS_TENANT_TOP_K": "2"})
    with _admin(gateway.url, secrets) as admin:
        tenants = [_tenant(admin) for _ in range(6)]
    heavy = [str(tenant_id) for tenant_id, _ in tenants[:2]]
    for _, key in tenants[:2]:
        _work(gateway.url, key, 12)
    for _, key in tenants[2:]:
        _work(gateway.url, key, 2)
    time.sleep(1.1)  # the top K is recomputed once a second
    for _, key in tenants[:2]:
        _work(gateway.url, key, 1)

    requests = _samples(gateway.url, "gateway_http_requests_total", token=secrets.admin_token)
    labelled = {dict(labels)["tenant"] for labels in requests}
    assert labelled == {*heavy, "other"}
    routes = {dict(labels)["route"] for labels in requests}
    assert "/users" in routes
    # A tenant gets its label once it is in the top K (refreshed every second); what it sent
    # before is in "other", so no request is lost from the totals.
    for tenant in heavy:
        assert 0 < sum(v for k, v in requests.items() if dict(k)["tenant"] == tenant) <= 13
    assert sum(v for k, v in requests.items() if dict(k)["route"] == "/users") == 13 * 2 + 2 * 4
    latency = _samples(
        gateway.url, "gateway_http_request_duration_seconds_count", token=secrets.admin_token
    )
    assert sum(latency.values()) >= 32

    # The service saw the same work, charged to the same tenant in its own /metrics. The
    # session's service keeps its own top K (of 50) over every test's tenants, so the heavy
    # tenant earns its label there by its work, polled rather than timed.
    deadline = time.monotonic() + 20
    while True:
        db = _samples(users_service.url, "service_db_seconds_total")
        charged = {dict(labels)["tenant"]: seconds for labels, seconds in db.items()}
        if charged.get(heavy[0], 0) > 0:
            break
        assert time.monotonic() < deadline, charged
        _work(gateway.url, tenants[0][1], 10)
        time.sleep(0.5)
    served = _samples(users_service.url, "service_http_requests_total")
    assert any(dict(labels)["route"] == "/users" for labels in served)
