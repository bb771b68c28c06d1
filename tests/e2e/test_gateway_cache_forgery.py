"""Redis is not trusted as authorisation: entries the gateway did not seal are ignored."""

from __future__ import annotations

import hashlib
import json
import re
import secrets as pysecrets
import time

import httpx
import redis

from gateway.tests.factories import bearer, create_tenant
from kit.procs import ServiceProcess
from kit.servers import RedisServer
from kit.stacks import ExternalRedis


def _redis(server: RedisServer | ExternalRedis) -> redis.Redis:
    return redis.Redis.from_url(server.url, socket_timeout=2, decode_responses=True)


def _rejected(admin: httpx.Client) -> float:
    text = admin.get("/metrics").text
    found = re.findall(r"^gateway_tenant_cache_rejected_total\{[^}]*\} (\S+)$", text, re.M)
    return sum(float(v) for v in found)


def test_a_forged_api_key_entry_without_ttl_is_not_honoured(
    gateway: ServiceProcess, admin: httpx.Client, redis_server: RedisServer | ExternalRedis
) -> None:
    victim = create_tenant(admin)
    client = _redis(redis_server)
    before = _rejected(admin)

    # Anyone who can write to Redis tries to mint a permanent key for the victim tenant.
    forged_key = "tk_" + pysecrets.token_urlsafe(32)
    forged_entry = "tk:apikey:" + hashlib.sha256(forged_key.encode()).hexdigest()
    client.set(forged_entry, json.dumps({"key_id": 1, "tenant_id": victim["id"]}))
    assert client.ttl(forged_entry) == -1
    response = httpx.get(f"{gateway.url}/users", headers=bearer(forged_key), timeout=5)
    assert response.status_code == 401, response.text

    # Nor does a genuine sealed entry work when copied under the forged key's name.
    assert httpx.get(f"{gateway.url}/users", headers=bearer(victim["api_key"])).status_code == 200
    genuine = "tk:apikey:" + hashlib.sha256(victim["api_key"].encode()).hexdigest()
    sealed = client.get(genuine)
    assert sealed is not None and client.ttl(genuine) > 0
    other_key = "tk_" + pysecrets.token_urlsafe(32)
    client.set("tk:apikey:" + hashlib.sha256(other_key.encode()).hexdigest(), sealed)
    response = httpx.get(f"{gateway.url}/users", headers=bearer(other_key), timeout=5)
    assert response.status_code == 401, response.text
    assert _rejected(admin) >= before + 2


def test_a_forged_tenant_entry_neither_lifts_a_suspension_nor_a_rate_limit(
    gateway: ServiceProcess, admin: httpx.Client, redis_server: RedisServer | ExternalRedis
) -> None:
    tenant = create_tenant(admin, rate_limit_per_second=1)
    client = _redis(redis_server)
    url, headers = f"{gateway.url}/users", bearer(tenant["api_key"])
    assert httpx.get(url, headers=headers).status_code == 200
    assert admin.patch(f"/admin/tenants/{tenant['id']}", json={"status": "suspended"}).is_success
    time.sleep(0.8)  # past the writer's second invalidation pass, which would delete it

    entry = f"tk:tenant:id:{tenant['id']}"
    record = {**{k: tenant[k] for k in ("id", "name", "slug", "created_at")}}
    client.set(entry, json.dumps({**record, "status": "active", "rate_limit_per_second": 0}))
    response = httpx.get(url, headers=headers, timeout=5)
    assert response.status_code == 403, response.text

    # Reactivated for real: the forged "no limit" does not stick either.
    assert admin.patch(f"/admin/tenants/{tenant['id']}", json={"status": "active"}).is_success
    time.sleep(0.8)
    client.set(entry, json.dumps({**record, "status": "active", "rate_limit_per_second": 0}))
    statuses = [httpx.get(url, headers=headers, timeout=5).status_code for _ in range(6)]
    assert 429 in statuses, statuses
