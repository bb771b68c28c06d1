"""No tenant takes another's turn, through a real gateway in front of the echo upstream.

The echo upstream's `?delay=` makes a slow request; every bound here is loose (seconds) and
the comparison is against what the same traffic costs without the protection.
"""

from __future__ import annotations

import asyncio
import socket
import time
from urllib.parse import urlsplit

import httpx

from gateway.tests.conftest import StartGateway
from gateway.tests.factories import bearer, create_tenant, wait_for
from gateway.tests.test_tenant_cache import counters


def admin_for(gateway_url: str, echo_admin: httpx.Client) -> httpx.Client:
    return httpx.Client(base_url=gateway_url, headers=echo_admin.headers, timeout=10)


async def fire(url: str, key: str, count: int) -> list[int]:
    limits = httpx.Limits(max_connections=count + 4)
    async with httpx.AsyncClient(timeout=20, limits=limits) as client:
        responses = await asyncio.gather(
            *(client.get(url, headers=bearer(key)) for _ in range(count))
        )
    return [r.status_code for r in responses]


def test_a_tenant_at_its_in_flight_cap_gets_429_while_another_is_served_at_once(
    start_gateway: StartGateway, echo_admin: httpx.Client
) -> None:
    gateway = start_gateway({"TENANT_MAX_IN_FLIGHT": "16"})
    noisy, quiet = create_tenant(echo_admin), create_tenant(echo_admin)
    slow = f"{gateway.url}/echo?delay=3"

    async def scenario() -> tuple[list[int], httpx.Response, float, int]:
        held = asyncio.create_task(fire(slow, noisy["api_key"], 16))
        await asyncio.sleep(1.0)  # the sixteen are in flight upstream
        async with httpx.AsyncClient(base_url=gateway.url, timeout=10) as client:
            started = time.monotonic()
            over = await client.get("/echo", headers=bearer(noisy["api_key"]))
            other = await client.get("/echo", headers=bearer(quiet["api_key"]))
            elapsed = time.monotonic() - started
        return await held, over, elapsed, other.status_code

    held, over, elapsed, other_status = asyncio.run(scenario())
    assert held == [200] * 16
    assert over.status_code == 429
    assert over.headers["Retry-After"] == "1"
    assert "max_in_flight" in over.json()["detail"] and "not a rate limit" in over.json()["detail"]
    assert other_status == 200
    assert elapsed < 1.0, "the refusal and the other tenant's answer must not wait"
    # The slots came back when the sixteen answers were sent.
    assert httpx.get(f"{gateway.url}/echo", headers=bearer(noisy["api_key"])).status_code == 200
    metrics = counters(gateway.url, gateway.env["ADMIN_TOKEN"])
    refused = metrics["gateway_admission_refused_total{reason=tenant_in_flight}"]
    assert refused == 1


def test_a_tenants_own_max_in_flight_applies_and_null_restores_the_default(
    start_gateway: StartGateway, echo_admin: httpx.Client
) -> None:
    gateway = start_gateway({"TENANT_MAX_IN_FLIGHT": "0"})
    with admin_for(gateway.url, echo_admin) as admin:
        tenant = create_tenant(admin, max_in_flight=1)
        assert tenant["max_in_flight"] == 1
        slow = f"{gateway.url}/echo?delay=1"
        assert sorted(asyncio.run(fire(slow, tenant["api_key"], 3))) == [200, 429, 429]

        patched = admin.patch(f"/admin/tenants/{tenant['id']}", json={"max_in_flight": None})
        assert patched.status_code == 200 and patched.json()["max_in_flight"] is None
        # Back to TENANT_MAX_IN_FLIGHT=0: no cap, seen within the SPEC's second.
        wait_for(lambda: asyncio.run(fire(slow, tenant["api_key"], 3)) == [200] * 3, within=4)
        bad = admin.patch(f"/admin/tenants/{tenant['id']}", json={"max_in_flight": -1})
        assert bad.status_code == 422


def test_a_one_request_tenant_does_not_queue_behind_anothers_backlog(
    start_gateway: StartGateway, echo_admin: httpx.Client
) -> None:
    gateway = start_gateway(
        {
            "GATEWAY_MAX_IN_FLIGHT": "4",
            "TENANT_MAX_IN_FLIGHT": "0",
            "GATEWAY_QUEUE_TIMEOUT_SECONDS": "20",
        }
    )
    backlog, lone = create_tenant(echo_admin), create_tenant(echo_admin)

    async def scenario() -> tuple[list[int], int, float]:
        # 4 in flight and 8 queued, two seconds each: in order, the last would wait ~4 s more.
        flood = asyncio.create_task(fire(f"{gateway.url}/echo?delay=2", backlog["api_key"], 12))
        await asyncio.sleep(0.5)
        async with httpx.AsyncClient(timeout=20) as client:
            started = time.monotonic()
            answer = await client.get(f"{gateway.url}/echo", headers=bearer(lone["api_key"]))
            waited = time.monotonic() - started
        return await flood, answer.status_code, waited

    async def scenario_with_gauges() -> tuple[list[int], int, float, dict[str, float]]:
        flooding = asyncio.create_task(scenario())
        await asyncio.sleep(1.0)
        gauges = await asyncio.to_thread(counters, gateway.url, gateway.env["ADMIN_TOKEN"])
        return (*(await flooding), gauges)

    flood, status, waited, gauges = asyncio.run(scenario_with_gauges())
    # Seen mid-run by an operator: the ceiling is full; the backlog (8) and the lone one wait.
    assert gauges["gateway_in_flight"] == 4 and gauges["gateway_admission_queued"] == 9
    assert (status, flood) == (200, [200] * 12)
    # Its turn comes at the next free slot (~1.5 s), not after the backlog (~5.5 s).
    assert waited < 3.5, f"waited {waited:.2f} s behind another tenant's backlog"


def test_a_client_that_hangs_up_frees_its_slot(
    start_gateway: StartGateway, echo_admin: httpx.Client
) -> None:
    gateway = start_gateway({"TENANT_MAX_IN_FLIGHT": "1"})
    tenant = create_tenant(echo_admin)
    url = urlsplit(gateway.url)
    # Gone while the upstream thinks, then gone in the middle of a streamed answer.
    for path in ("/echo?delay=8", "/echo?trickle=8"):
        with socket.create_connection((url.hostname, url.port)) as conn:
            request = (
                f"GET {path} HTTP/1.1\r\nHost: {url.netloc}\r\n"
                f"Authorization: Bearer {tenant['api_key']}\r\n\r\n"
            )
            conn.sendall(request.encode())
            time.sleep(0.5)
            blocked = httpx.get(f"{gateway.url}/echo", headers=bearer(tenant["api_key"]))
            assert blocked.status_code == 429
        # The client is gone; its slot must be back long before the upstream would answer.
        wait_for(
            lambda: (
                httpx.get(f"{gateway.url}/echo", headers=bearer(tenant["api_key"])).status_code
                == 200
            ),
            within=2.0,
        )


def test_fairness_off_lifts_the_cap_for_the_load_tests_comparison(
    start_gateway: StartGateway, echo_admin: httpx.Client
) -> None:
    gateway = start_gateway({"TENANT_FAIRNESS": "off", "TENANT_MAX_IN_FLIGHT": "1"})
    tenant = create_tenant(echo_admin, max_in_flight=1)
    assert asyncio.run(fire(f"{gateway.url}/echo?delay=1", tenant["api_key"], 3)) == [200] * 3


def test_keep_alive_clients_at_exactly_the_cap_are_never_refused(
    start_gateway: StartGateway, echo_admin: httpx.Client
) -> None:
    gateway = start_gateway({"TENANT_MAX_IN_FLIGHT": "4"})
    tenant = create_tenant(echo_admin)

    async def connection(client: httpx.AsyncClient) -> list[int]:
        # Each next request leaves the moment the previous answer has arrived.
        return [(await client.get("/echo")).status_code for _ in range(100)]

    async def scenario() -> list[int]:
        clients = [
            httpx.AsyncClient(base_url=gateway.url, headers=bearer(tenant["api_key"]), timeout=10)
            for _ in range(4)
        ]
        try:
            results = await asyncio.gather(*(connection(c) for c in clients))
        finally:
            for c in clients:
                await c.aclose()
        return [status for statuses in results for status in statuses]

    statuses = asyncio.run(scenario())
    assert statuses.count(200) == 400, f"{statuses.count(429)} refused at 4 connections, cap 4"


def test_slow_bodies_use_up_only_their_own_tenants_slots(
    start_gateway: StartGateway, echo_admin: httpx.Client
) -> None:
    gateway = start_gateway({"TENANT_MAX_IN_FLIGHT": "4"})
    slow, quiet = create_tenant(echo_admin), create_tenant(echo_admin)
    url = urlsplit(gateway.url)
    assert url.hostname is not None and url.port is not None
    # Headers promising a body that never comes (the slow-body attacker).
    hanging = []
    for _ in range(4):
        conn = socket.create_connection((url.hostname, url.port))
        conn.sendall(
            f"POST /echo HTTP/1.1\r\nHost: {url.netloc}\r\nContent-Length: 200\r\n"
            f"Authorization: Bearer {slow['api_key']}\r\nContent-Type: application/json\r\n\r\n"
            "{".encode()
        )
        hanging.append(conn)
    try:
        time.sleep(0.5)
        started = time.monotonic()
        refused = httpx.post(f"{gateway.url}/echo", headers=bearer(slow["api_key"]), json={})
        served = httpx.get(f"{gateway.url}/echo", headers=bearer(quiet["api_key"]))
        elapsed = time.monotonic() - started
    finally:
        for conn in hanging:
            conn.close()
    assert refused.status_code == 429 and "max_in_flight" in refused.json()["detail"]
    assert served.status_code == 200 and elapsed < 1.0
