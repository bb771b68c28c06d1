"""A flood of random well-formed keys reaches PostgreSQL at a bounded rate; known keys pass."""

from __future__ import annotations

import asyncio
import time

import httpx

from gateway.apikeys import generate_key
from gateway.config import Settings
from gateway.tests.conftest import StartGateway
from gateway.tests.factories import bearer, create_tenant
from gateway.tests.test_tenant_cache import counters

LOOKUPS = "gateway_tenant_db_lookups_total"


def client_at(address: str, base_url: str) -> httpx.AsyncClient:
    """A client whose connections come from this loopback address (127.0.0.0/8 is all local)."""
    return httpx.AsyncClient(
        base_url=base_url,
        transport=httpx.AsyncHTTPTransport(local_address=address),
        timeout=10,
    )


async def flood(base_url: str, *, addresses: list[str], seconds: float) -> list[int]:
    """Random keys from every address, 4 connections each, for `seconds`."""
    statuses: list[int] = []
    # Clients first: each builds an SSL context, slow enough on a busy machine to eat the time.
    clients = [client_at(a, base_url) for a in addresses]
    deadline = time.monotonic() + seconds

    async def worker(client: httpx.AsyncClient) -> None:
        while time.monotonic() < deadline:
            response = await client.get("/echo", headers=bearer(generate_key()))
            statuses.append(response.status_code)

    try:
        await asyncio.gather(*(worker(c) for c in clients for _ in range(4)))
    finally:
        for c in clients:
            await c.aclose()
    return statuses


# The test stacks raise the per-address budget for the whole suite (kit/stacks.py); these
# tests prove the product's default.
PRODUCT_DEFAULT_PER_CLIENT = {
    "KEY_LOOKUPS_PER_CLIENT_PER_SECOND": str(
        Settings.model_fields["KEY_LOOKUPS_PER_CLIENT_PER_SECOND"].default
    )
}


def test_a_random_key_flood_reaches_postgres_at_a_bounded_rate(
    start_gateway: StartGateway, echo_admin: httpx.Client
) -> None:
    # A low budget, so that even a slow (shared, busy) machine floods well past it; the
    # default (20/s, burst 20) keeps any one second under the 50 the same way.
    per_second = 5
    gateway = start_gateway({"KEY_LOOKUPS_PER_SECOND": str(per_second)})
    known = create_tenant(echo_admin)
    assert httpx.get(f"{gateway.url}/echo", headers=bearer(known["api_key"])).status_code == 200
    addresses = [f"127.0.0.{n}" for n in range(10, 26)]
    before = counters(gateway.url, gateway.env["ADMIN_TOKEN"])[LOOKUPS]

    async def scenario() -> tuple[list[int], float, int]:
        async with client_at("127.0.0.9", gateway.url) as client:
            started = time.monotonic()
            flooding = asyncio.create_task(flood(gateway.url, addresses=addresses, seconds=3))
            await asyncio.sleep(1.5)
            # A known tenant is served from the cache in the middle of the flood.
            status = (await client.get("/echo", headers=bearer(known["api_key"]))).status_code
            statuses = await flooding
            return statuses, time.monotonic() - started, status

    statuses, elapsed, known_status = asyncio.run(scenario())
    lookups = counters(gateway.url, gateway.env["ADMIN_TOKEN"])[LOOKUPS] - before
    # A full bucket (one second's worth) plus the refill: the most the guard lets through.
    budget = per_second * (1 + elapsed)
    assert len(statuses) >= 3 * budget, f"only {len(statuses)} keys sent: too slow to prove it"
    assert set(statuses) <= {401, 429, 503}
    assert known_status == 200
    assert lookups <= budget, f"{lookups} queries in {elapsed:.1f} s"
    refused = counters(gateway.url, gateway.env["ADMIN_TOKEN"])
    assert refused.get("gateway_key_lookups_refused_total{scope=global}", 0) > 0


def test_one_address_trying_unknown_keys_is_slowed_but_its_known_key_still_works(
    start_gateway: StartGateway, echo_admin: httpx.Client
) -> None:
    gateway = start_gateway(PRODUCT_DEFAULT_PER_CLIENT)
    known = create_tenant(echo_admin)

    async def scenario() -> tuple[list[httpx.Response], int, int]:
        async with client_at("127.0.0.30", gateway.url) as noisy:
            assert (await noisy.get("/echo", headers=bearer(known["api_key"]))).status_code == 200
            # At once: the address's burst (20) passes, the rest is refused before PostgreSQL.
            answers = await asyncio.gather(
                *(noisy.get("/echo", headers=bearer(generate_key())) for _ in range(60))
            )
            mine = (await noisy.get("/echo", headers=bearer(known["api_key"]))).status_code
        async with client_at("127.0.0.31", gateway.url) as neighbour:
            other = (await neighbour.get("/echo", headers=bearer(generate_key()))).status_code
        return list(answers), mine, other

    answers, mine, other = asyncio.run(scenario())
    statuses = [a.status_code for a in answers]
    assert 401 in statuses and statuses.count(429) >= 30, statuses
    refusal = next(a for a in answers if a.status_code == 429)
    assert refusal.headers["Retry-After"] == "1"
    assert "unrecognised API keys from this address" in refusal.json()["detail"]
    # Its cached key costs no lookup; another address still gets a real answer.
    assert mine == 200 and other == 401


def test_one_address_with_many_valid_keys_is_never_slowed(
    start_gateway: StartGateway, echo_admin: httpx.Client
) -> None:
    # A backend serving many tenants: every first lookup finds its key and is refunded.
    gateway = start_gateway({"KEY_LOOKUPS_PER_CLIENT_PER_SECOND": "1"})
    keys = [create_tenant(echo_admin)["api_key"] for _ in range(40)]

    async def scenario() -> list[int]:
        async with client_at("127.0.0.50", gateway.url) as client:
            return [(await client.get("/echo", headers=bearer(k))).status_code for k in keys]

    assert asyncio.run(scenario()) == [200] * 40


def test_random_subdomains_with_a_valid_key_share_the_same_budget(
    start_gateway: StartGateway, echo_admin: httpx.Client
) -> None:
    gateway = start_gateway(PRODUCT_DEFAULT_PER_CLIENT)
    known = create_tenant(echo_admin)
    # Its key and tenant cached first: what follows counts only the subdomains' lookups.
    assert httpx.get(f"{gateway.url}/echo", headers=bearer(known["api_key"])).status_code == 200
    before = counters(gateway.url, gateway.env["ADMIN_TOKEN"])[LOOKUPS]

    async def scenario() -> tuple[list[int], float]:
        async with client_at("127.0.0.40", gateway.url) as client:
            started = time.monotonic()
            answers = await asyncio.gather(
                *(
                    client.get(
                        "/echo",
                        headers={**bearer(known["api_key"]), "Host": f"nobody-{n}.example.test"},
                    )
                    for n in range(60)
                )
            )
            return [a.status_code for a in answers], time.monotonic() - started

    statuses, elapsed = asyncio.run(scenario())
    lookups = counters(gateway.url, gateway.env["ADMIN_TOKEN"])[LOOKUPS] - before
    assert set(statuses) == {403, 429} and statuses.count(429) >= 30, statuses
    # The address's burst (20) and refill (5/s), nothing more.
    assert lookups <= 20 + 5 * elapsed
