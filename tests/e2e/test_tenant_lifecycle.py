"""Tenant lifecycle end to end (issue 13): pending deletion, restore, purge, certificate.

Real PostgreSQL, Redis, users service and gateway processes; the tenant's own key is the
witness of each state.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable
from typing import Any

import httpx
import psycopg2
import redis

from gateway import lifecycle, purger
from gateway.tests.factories import bearer, create_tenant, wait_for
from kit.procs import ServiceProcess
from kit.servers import RedisServer
from kit.stacks import Database, Secrets, Stack

WITHIN_SECONDS = 1.0


def certificate_key(secrets: Secrets) -> bytes:
    """The key a gateway derives from ADMIN_TOKEN when DELETION_CERTIFICATE_SECRET is unset."""
    return hmac.new(
        secrets.admin_token.encode(), b"tenantkit-deletion-certificate", hashlib.sha256
    ).digest()


def users_of(database: Database, tenant_id: int) -> int:
    """The tenant's users rows, counted as the superuser (no RLS in the way)."""
    conn = psycopg2.connect(database.url)
    try:
        with conn, conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM users WHERE tenant_id = %s", (tenant_id,))
            row = cur.fetchone()
    finally:
        conn.close()
    assert row is not None
    return int(row[0])


def status(url: str, key: str) -> int:
    return httpx.get(f"{url}/users", headers=bearer(key), timeout=5).status_code


def add_users(url: str, key: str, count: int) -> list[dict[str, Any]]:
    with httpx.Client(base_url=url, headers=bearer(key), timeout=10) as client:
        made = [client.post("/users", json={"name": f"user {n}"}) for n in range(count)]
    assert all(r.status_code == 201 for r in made), [r.text for r in made]
    return [r.json() for r in made]


def redis_keys_of(redis_server: RedisServer, tenant_id: int) -> list[str]:
    """The tenant's rate-limit and usage keys in Redis."""
    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    try:
        found = list(client.scan_iter(f"tk:usage:{tenant_id}:*"))
        return found + ([f"tk:rl:{tenant_id}"] if client.exists(f"tk:rl:{tenant_id}") else [])
    finally:
        client.close()


def requests_counted(redis_server: RedisServer, usage_keys: list[str]) -> int:
    """The requests counted in these usage hashes."""
    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    try:
        return sum(int(client.hget(key, "requests") or 0) for key in usage_keys)
    finally:
        client.close()


def test_a_tenant_walks_through_every_state(
    gateway: ServiceProcess,
    admin: httpx.Client,
    database: Database,
    secrets: Secrets,
    redis_server: RedisServer,
) -> None:
    tenant = create_tenant(admin)
    tid, key = tenant["id"], tenant["api_key"]
    add_users(gateway.url, key, 3)
    before = httpx.get(f"{gateway.url}/users", headers=bearer(key), timeout=5).json()
    assert admin.get(f"/admin/tenants/{tid}/deletion-certificate").status_code == 404

    admin.patch(f"/admin/tenants/{tid}", json={"status": "suspended"}).raise_for_status()
    assert status(gateway.url, key) == 403
    admin.patch(f"/admin/tenants/{tid}", json={"status": "active"}).raise_for_status()
    assert status(gateway.url, key) == 200
    assert admin.post(f"/admin/tenants/{tid}/restore").status_code == 409  # not deleted

    # Deleted: refused at once (404, as if gone), but every row and key is kept.
    assert admin.delete(f"/admin/tenants/{tid}").status_code == 204
    assert wait_for(lambda: status(gateway.url, key) == 404, within=WITHIN_SECONDS) <= 1
    assert admin.get(f"/admin/tenants/{tid}").json()["status"] == "pending_deletion"
    assert users_of(database, tid) == 3
    assert admin.get(f"/admin/tenants/{tid}/deletion-certificate").status_code == 404
    # Only restore brings it back: a PATCH is refused.
    patched = admin.patch(f"/admin/tenants/{tid}", json={"status": "active"})
    assert patched.status_code == 409 and "detail" in patched.json()
    assert status(gateway.url, key) == 404

    # Restored: the same key sees the same users.
    restored = admin.post(f"/admin/tenants/{tid}/restore")
    assert restored.status_code == 200 and restored.json()["status"] == "active"
    assert wait_for(lambda: status(gateway.url, key) == 200, within=WITHIN_SECONDS) <= 1
    again = httpx.get(f"{gateway.url}/users", headers=bearer(key), timeout=5).json()
    assert again == before

    # Its usage is flushed to Redis every second; the purge must not leave it there.
    wait_for(lambda: len(redis_keys_of(redis_server, tid)) >= 2, within=5, interval=0.2)
    time.sleep(purger.LATE_USAGE_SECONDS)  # every request so far is counted in Redis now

    # A request just before the purge: its count is still in the gateway's memory when the
    # purge drops the keys, and its flush must not bring a usage hash back.
    assert httpx.get(f"{gateway.url}/users", headers=bearer(key), timeout=5).status_code == 200

    # Purged: rows gone, key unknown, Redis keys gone, a certificate signed with the kit's key.
    assert admin.delete(f"/admin/tenants/{tid}", params={"purge": "true"}).status_code == 204
    assert status(gateway.url, key) == 401
    assert users_of(database, tid) == 0
    # The last request's count may land just after the purge dropped the keys (its replica
    # flushes every second): at most that one request, and the purge's late pass drops it.
    left = redis_keys_of(redis_server, tid)
    assert f"tk:rl:{tid}" not in left
    assert requests_counted(redis_server, left) <= 1
    time.sleep(purger.LATE_USAGE_SECONDS + 0.5)  # every count of it has been flushed by now
    assert redis_keys_of(redis_server, tid) == []
    assert admin.get(f"/admin/tenants/{tid}").status_code == 404
    assert admin.post(f"/admin/tenants/{tid}/restore").status_code == 404
    cert = admin.get(f"/admin/tenants/{tid}/deletion-certificate").json()
    assert cert["tenant_id"] == tid and cert["slug"] == tenant["slug"]
    assert cert["tables"]["public.users"] == {"before": 3, "after": 0}
    assert all(counts["after"] == 0 for counts in cert["tables"].values())
    assert cert["wal_lsn"] and cert["started_at"] <= cert["finished_at"]
    assert lifecycle.verify(cert, certificate_key(secrets))
    forged = {**cert, "tables": {"public.users": {"before": 0, "after": 0}}}
    assert not lifecycle.verify(forged, certificate_key(secrets))


def test_other_tenants_are_untouched_by_a_purge(
    gateway: ServiceProcess, admin: httpx.Client, database: Database
) -> None:
    doomed, kept = create_tenant(admin), create_tenant(admin)
    add_users(gateway.url, doomed["api_key"], 2)
    kept_users = add_users(gateway.url, kept["api_key"], 2)
    assert admin.delete(f"/admin/tenants/{doomed['id']}?purge=true").status_code == 204
    assert users_of(database, kept["id"]) == 2
    listed = httpx.get(f"{gateway.url}/users", headers=bearer(kept["api_key"]), timeout=5).json()
    assert [u["id"] for u in listed] == [u["id"] for u in kept_users]


def test_the_purger_purges_once_the_grace_period_is_over(
    fresh_stack: Callable[..., Stack], start_service: Callable[..., ServiceProcess]
) -> None:
    stack = fresh_stack(gateway_env={"TENANT_DELETION_GRACE_SECONDS": "2"})
    with httpx.Client(
        base_url=stack.url, headers=bearer(stack.secrets.admin_token), timeout=30
    ) as admin:
        tenant = create_tenant(admin)
        add_users(stack.url, tenant["api_key"], 5)
        assert admin.delete(f"/admin/tenants/{tenant['id']}").status_code == 204
        # Within the grace, still restorable data.
        assert users_of(stack.database, tenant["id"]) == 5
        wait_for(
            lambda: (
                admin.get(f"/admin/tenants/{tenant['id']}/deletion-certificate").status_code == 200
            ),
            within=15,
            interval=0.2,
        )
        cert = admin.get(f"/admin/tenants/{tenant['id']}/deletion-certificate").json()
    assert cert["tables"]["public.users"] == {"before": 5, "after": 0}
    assert users_of(stack.database, tenant["id"]) == 0
    assert lifecycle.verify(cert, certificate_key(stack.secrets))
