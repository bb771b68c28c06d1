"""Usage while Redis is down: a fast 503 for the question, no lost counts for the answer."""

from __future__ import annotations

import time

import httpx

from gateway.tests.conftest import StartGateway
from gateway.tests.factories import bearer, create_tenant
from kit.servers import RedisServer


def test_usage_counted_while_redis_is_down_arrives_once_it_is_back(
    start_gateway: StartGateway, own_redis: RedisServer, echo_admin: httpx.Client
) -> None:
    gateway = start_gateway({"REDIS_URL": own_redis.url})
    tenant = create_tenant(echo_admin)
    usage_url = f"{gateway.url}/admin/tenants/{tenant['id']}/usage"
    admin = echo_admin.headers
    for _ in range(5):
        assert (
            httpx.get(f"{gateway.url}/users", headers=bearer(tenant["api_key"])).status_code == 200
        )
    time.sleep(1.5)  # flushed to Redis, which keeps nothing across the kill below
    own_redis.kill()
    for _ in range(3):
        assert (
            httpx.get(f"{gateway.url}/users", headers=bearer(tenant["api_key"])).status_code == 200
        )

    started = time.monotonic()
    down = httpx.get(usage_url, headers=admin, timeout=10)
    assert time.monotonic() - started < 1.5
    assert down.status_code == 503
    assert down.json() == {"detail": "usage store (redis) unavailable"}

    own_redis.start()
    deadline = time.monotonic() + 10
    while True:
        answer = httpx.get(usage_url, headers=admin, timeout=10)
        if answer.status_code == 200 and answer.json()["requests"]:
            break
        assert time.monotonic() < deadline, "usage never came back"
        time.sleep(0.3)
    # The 3 requests counted while Redis was away, exactly once (the 5 before died with it).
    assert answer.json()["requests"] == 3
