"""The signed hop cannot be replayed: not with another body, not as is, not to another service.

Against the real users service process and the real Redis it remembers nonces in.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from kit.servers import RedisServer
from services.tenancy.signing import EXTRA_HEADER, destination_key
from services.users.tests.conftest import SignedClient

REFUSED = {"detail": "missing or invalid tenant context"}


def _names(api: SignedClient, tenant: int) -> list[str]:
    response = api.request("GET", "/users?limit=500", tenant)
    assert response.status_code == 200, response.text
    return [u["name"] for u in response.json()]


def _signed_post(api: SignedClient, tenant: int, name: str) -> tuple[bytes, dict[str, str]]:
    body = json.dumps({"name": name}).encode()
    headers = api.headers("POST", "/users", tenant, body=body)
    return body, {**headers, "content-type": "application/json"}


def test_exact_replay_of_a_signed_request_is_refused(
    api: SignedClient, make_tenant: Callable[[], int]
) -> None:
    tenant = make_tenant()
    body, headers = _signed_post(api, tenant, "Once")
    first = api.client.post("/users", content=body, headers=headers)
    assert first.status_code == 201, first.text
    again = api.client.post("/users", content=body, headers=headers)
    assert (again.status_code, again.json()) == (401, REFUSED)
    assert _names(api, tenant) == ["Once"]


def test_signature_replayed_with_a_changed_body_is_refused(
    api: SignedClient, make_tenant: Callable[[], int]
) -> None:
    tenant = make_tenant()
    _, headers = _signed_post(api, tenant, "Harmless")
    # The captured headers, a body of the attacker's choosing, never sent before.
    forged = api.client.post("/users", content=b'{"name": "Mallory"}', headers=headers)
    assert (forged.status_code, forged.json()) == (401, REFUSED)
    assert _names(api, tenant) == []


def test_signature_for_another_destination_is_refused(
    api: SignedClient, make_tenant: Callable[[], int]
) -> None:
    tenant = make_tenant()
    for_notes = api.headers("GET", "/users", tenant, destination="/notes")
    response = api.client.get("/users", headers=for_notes)
    assert (response.status_code, response.json()) == (401, REFUSED)
    assert api.client.get("/users", headers=api.headers("GET", "/users", tenant)).status_code == 200


def test_extra_signed_fields_are_covered_by_the_signature(
    api: SignedClient, make_tenant: Callable[[], int]
) -> None:
    tenant = make_tenant()
    headers = api.headers("GET", "/users", tenant, extra={"statement_timeout_ms": 5000})
    assert headers[EXTRA_HEADER] == "statement_timeout_ms=5000"
    changed = {**headers, EXTRA_HEADER: "statement_timeout_ms=999999"}
    assert api.client.get("/users", headers=changed).status_code == 401
    dropped = {k: v for k, v in headers.items() if k != EXTRA_HEADER}
    assert api.client.get("/users", headers=dropped).status_code == 401
    added = api.headers("GET", "/users", tenant)
    added[EXTRA_HEADER] = "placement=shared"
    assert api.client.get("/users", headers=added).status_code == 401
    assert api.client.get("/users", headers=headers).status_code == 200


def test_replay_to_another_replica_is_refused(
    api: SignedClient, make_tenant: Callable[[], int], start_service: Callable[..., Any]
) -> None:
    # A second replica on the same Redis: nonces are shared, not per process.
    replica = start_service("users")
    tenant = make_tenant()
    body, headers = _signed_post(api, tenant, "Replicated")
    assert api.client.post("/users", content=body, headers=headers).status_code == 201
    replayed = httpx.post(f"{replica.url}/users", content=body, headers=headers, timeout=10)
    assert (replayed.status_code, replayed.json()) == (401, REFUSED)
    assert _names(api, tenant) == ["Replicated"]


@pytest.fixture
def replica_on_own_redis(
    start_service: Callable[..., Any], own_redis: RedisServer, secrets: Any
) -> Iterator[Callable[..., SignedClient]]:
    clients: list[httpx.Client] = []

    def start(**env: str) -> SignedClient:
        service = start_service("users", env={"REDIS_URL": own_redis.services_url, **env})
        clients.append(httpx.Client(base_url=service.url, timeout=10))
        return SignedClient(clients[-1], secrets.signing_secret)

    yield start
    for client in clients:
        client.close()


def test_with_redis_down_a_replica_still_refuses_what_it_accepted_itself(
    replica_on_own_redis: Callable[..., SignedClient],
    own_redis: RedisServer,
    make_tenant: Callable[[], int],
) -> None:
    api = replica_on_own_redis()
    tenant = make_tenant()
    own_redis.stop()
    body, headers = _signed_post(api, tenant, "During outage")
    started = time.monotonic()
    first = api.client.post("/users", content=body, headers=headers)
    assert first.status_code == 201, first.text
    assert time.monotonic() - started < 2  # the dead store costs a bounded wait, not a hang
    assert api.client.post("/users", content=body, headers=headers).status_code == 401
    ready = api.client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["status"] == "degraded"
    # Redis back: what was accepted during the outage is still refused on this replica.
    own_redis.start()
    time.sleep(1.1)  # past the retry pause after the failure
    assert api.client.get("/readyz").json()["status"] == "ready"
    assert api.client.post("/users", content=body, headers=headers).status_code == 401
    assert _names(api, tenant) == ["During outage"]


def test_fail_closed_replay_store_answers_503_fast_while_redis_is_down(
    replica_on_own_redis: Callable[..., SignedClient],
    own_redis: RedisServer,
    make_tenant: Callable[[], int],
) -> None:
    api = replica_on_own_redis(REPLAY_STORE_FAIL_CLOSED="true")
    tenant = make_tenant()
    assert api.request("GET", "/users", tenant).status_code == 200
    own_redis.stop()
    started = time.monotonic()
    response = api.request("POST", "/users", tenant, json={"name": "Refused"})
    assert (response.status_code, response.json()) == (503, {"detail": "replay store unavailable"})
    assert time.monotonic() - started < 2
    assert api.client.get("/readyz").status_code == 503
    own_redis.start()
    time.sleep(1.1)
    assert api.request("GET", "/users", tenant).json() == []


def test_a_service_given_only_its_derived_key_serves_the_gateways_requests(
    start_service: Callable[..., Any], secrets: Any, make_tenant: Callable[[], int]
) -> None:
    # Deployed so, a compromised service holds no key that signs for any other destination.
    key = destination_key(secrets.signing_secret, "/users").hex()
    users = start_service(
        "users", env={"INTERNAL_SIGNING_SECRET": None, "SERVICE_SIGNING_KEY": key}
    )
    tenant = make_tenant()
    with httpx.Client(base_url=users.url, timeout=10) as client:
        api = SignedClient(client, secrets.signing_secret)
        assert api.request("POST", "/users", tenant, json={"name": "Keyed"}).status_code == 201
        for_notes = api.headers("GET", "/users", tenant, destination="/notes")
        assert client.get("/users", headers=for_notes).status_code == 401
        assert _names(api, tenant) == ["Keyed"]
