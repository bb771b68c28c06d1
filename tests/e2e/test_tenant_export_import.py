"""Export and import end to end (issue 13): consistent under writes, verified, repeatable."""

from __future__ import annotations

import io
import json
import tarfile
import threading
from collections.abc import Callable
from typing import Any

import httpx

from gateway.tests.factories import bearer, create_tenant
from kit.procs import ServiceProcess
from kit.stacks import Stack


def members(archive: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers()}  # type: ignore[union-attr]


def repack(files: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def manifest(archive: bytes) -> dict[str, Any]:
    return json.loads(members(archive)["manifest.json"])


def test_export_under_writes_then_import_into_a_fresh_database(
    gateway: ServiceProcess, admin: httpx.Client, fresh_stack: Callable[..., Stack]
) -> None:
    tenant = create_tenant(admin)
    key = tenant["api_key"]
    with httpx.Client(base_url=gateway.url, headers=bearer(key), timeout=10) as client:
        for n in range(50):
            body = {"name": f"user {n}", "email": f"u{n}@example.com"}
            assert client.post("/users", json=body).status_code == 201
        stop = threading.Event()

        def write() -> None:
            with httpx.Client(base_url=gateway.url, headers=bearer(key), timeout=10) as writer:
                n = 1000
                while not stop.is_set() and n < 1300:
                    writer.post("/users", json={"name": f"late {n}"})
                    n += 1

        writer = threading.Thread(target=write)
        writer.start()
        try:
            exported = admin.get(f"/admin/tenants/{tenant['id']}/export")
        finally:
            stop.set()
            writer.join()
    assert exported.status_code == 200, exported.text
    assert exported.headers["content-type"] == "application/gzip"
    files = members(exported.content)
    meta = json.loads(files["manifest.json"])
    users = meta["tables"]["public.users"]
    lines = files[users["file"]].splitlines()
    assert users["rows"] == len(lines) >= 50
    # One snapshot: per-tenant ids are handed out 1, 2, 3...; a consistent read is a prefix.
    assert [json.loads(line)["id"] for line in lines] == list(range(1, len(lines) + 1))
    assert all("tenant_id" not in json.loads(line) for line in lines)
    assert meta["tenant"]["id"] == tenant["id"] and meta["schema_revision"]

    stack = fresh_stack()
    with httpx.Client(
        base_url=stack.url, headers=bearer(stack.secrets.admin_token), timeout=30
    ) as fresh_admin:
        made = fresh_admin.post("/admin/tenants/import", content=exported.content)
        assert made.status_code == 201, made.text
        imported = made.json()
        assert imported["api_key"] != key and imported["name"] == tenant["name"]
        with httpx.Client(base_url=stack.url, headers=bearer(imported["api_key"])) as client:
            listed = client.get("/users").json()
            assert [u["id"] for u in listed] == list(range(1, len(lines) + 1))
            # The tenant's counter moved past the imported ids.
            assert client.post("/users", json={"name": "new"}).json()["id"] == len(lines) + 1
            client.delete(f"/users/{len(lines) + 1}")
        again = fresh_admin.get(f"/admin/tenants/{imported['id']}/export")
    again_meta = manifest(again.content)
    assert again_meta["tables"]["public.users"]["sha256"] == users["sha256"]
    assert members(again.content)[users["file"]] == files[users["file"]]


def test_a_tampered_or_broken_archive_is_refused_and_nothing_is_written(
    gateway: ServiceProcess, admin: httpx.Client
) -> None:
    tenant = create_tenant(admin)
    with httpx.Client(base_url=gateway.url, headers=bearer(tenant["api_key"])) as client:
        for n in range(3):
            assert client.post("/users", json={"name": f"user {n}"}).status_code == 201
    good = admin.get(f"/admin/tenants/{tenant['id']}/export").content
    files = members(good)
    name = manifest(good)["tables"]["public.users"]["file"]
    tampered = {**files, name: files[name].replace(b"user 1", b"user X")}
    dropped = {k: v for k, v in files.items() if k != name}
    meta = json.loads(files["manifest.json"])
    meta["tables"]["public.users"]["rows"] = 2
    recounted = {**files, "manifest.json": json.dumps(meta).encode()}
    count = len(admin.get("/admin/tenants").json())
    for body in (repack(tampered), repack(dropped), repack(recounted), b"not a tar", good[:100]):
        response = admin.post(
            "/admin/tenants/import", content=body, params={"name": "copy", "slug": "copy"}
        )
        assert response.status_code == 422, response.text
        assert "detail" in response.json()
    assert len(admin.get("/admin/tenants").json()) == count
    # The untouched archive goes in (under another name: the original still exists).
    ok = admin.post("/admin/tenants/import", content=good, params={"name": f"copy {tenant['id']}"})
    assert ok.status_code == 409  # same slug as the original
    slug = f"copy-{tenant['id']}"
    ok = admin.post("/admin/tenants/import", content=good, params={"name": slug, "slug": slug})
    assert ok.status_code == 201, ok.text
