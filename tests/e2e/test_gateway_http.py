"""HTTP details through the real gateway and users service: ids, slashes, links, admin, CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx

from gateway.tests.factories import bearer, create_tenant, unique_name
from kit.procs import ServiceProcess
from kit.servers import RedisServer
from kit.testing import Database

ROOT = Path(__file__).resolve().parents[2]


def test_request_id_is_kept_or_generated_and_echoed(
    gateway: ServiceProcess, admin: httpx.Client
) -> None:
    tenant = create_tenant(admin)
    with httpx.Client(base_url=gateway.url, headers=bearer(tenant["api_key"])) as client:
        assert (
            client.get("/users", headers={"X-Request-ID": "trace-7.a"}).headers["x-request-id"]
            == "trace-7.a"
        )
        generated = client.get("/users", headers={"X-Request-ID": "bad id!"}).headers[
            "x-request-id"
        ]
        assert generated != "bad id!" and len(generated) >= 16
        assert client.get("/users").headers["x-request-id"] != generated


def test_users_with_and_without_slash_answer_without_redirect(
    gateway: ServiceProcess, admin: httpx.Client
) -> None:
    tenant = create_tenant(admin)
    with httpx.Client(base_url=gateway.url, headers=bearer(tenant["api_key"])) as client:
        for path in ("/users", "/users/"):
            created = client.post(path, data={"name": f"via {path}"})
            assert created.status_code == 201, (path, created.text)
            listed = client.get(path)
            assert listed.status_code == 200 and "location" not in listed.headers
        assert sorted(u["name"] for u in client.get("/users").json()) == [
            "via /users",
            "via /users/",
        ]


def test_pagination_link_points_at_the_gateway_path_not_the_upstream(
    gateway: ServiceProcess, users_service: ServiceProcess, admin: httpx.Client
) -> None:
    tenant = create_tenant(admin)
    with httpx.Client(base_url=gateway.url, headers=bearer(tenant["api_key"])) as client:
        for name in ("a", "b", "c"):
            client.post("/users", json={"name": name}).raise_for_status()
        page = client.get("/users?limit=2")
        link = page.headers["link"]
        assert str(users_service.port) not in link
        next_url = link.split(";")[0].strip("<>")
        rest = client.get(next_url)
        assert [u["name"] for u in page.json() + rest.json()] == ["a", "b", "c"]


def test_hop_by_hop_headers_are_not_returned(gateway: ServiceProcess, admin: httpx.Client) -> None:
    tenant = create_tenant(admin)
    response = httpx.get(
        f"{gateway.url}/users",
        headers={
            **bearer(tenant["api_key"]),
            "Connection": "keep-alive, X-Private",
            "X-Private": "1",
        },
    )
    assert response.status_code == 200
    for name in ("keep-alive", "transfer-encoding", "upgrade", "x-private", "server"):
        assert name not in response.headers


def test_admin_api_statuses(gateway: ServiceProcess, admin: httpx.Client) -> None:
    tenants = admin.base_url.join("/admin/tenants")  # the admin listener, public or internal
    assert httpx.get(tenants).status_code == 401
    assert httpx.get(tenants, headers=bearer("nope")).status_code == 401
    assert admin.get(f"/admin/tenants/{10**12}").status_code == 404
    tenant = create_tenant(admin)
    assert admin.post("/admin/tenants", json={"name": tenant["name"]}).status_code == 409
    assert admin.post("/admin/tenants", json={"slug": "x"}).status_code == 422
    assert admin.patch(f"/admin/tenants/{tenant['id']}", json={"status": "gone"}).status_code == 422


def test_cli_creates_a_tenant_whose_key_works_through_the_gateway(
    gateway: ServiceProcess, database: Database, redis_server: RedisServer
) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "tenants", "create", unique_name("cli e2e")],
        env={"PATH": "/usr/bin:/bin", "DATABASE_URL": database.url, "REDIS_URL": redis_server.url},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    key = json.loads(result.stdout)["api_key"]
    created = httpx.post(f"{gateway.url}/users", json={"name": "From CLI"}, headers=bearer(key))
    assert created.status_code == 201
    assert created.json()["tenant_id"] == json.loads(result.stdout)["id"]
