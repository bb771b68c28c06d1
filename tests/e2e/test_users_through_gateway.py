"""The users resource as a client meets it: through the gateway, with tenants' API keys."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import psycopg2
import pytest

from kit.testing import Database


@pytest.fixture
def tenant_client(
    gateway: Any, admin: httpx.Client
) -> Iterator[Callable[[], tuple[int, httpx.Client]]]:
    """A factory: a new tenant (admin API) and a client on the gateway holding its API key."""
    clients: list[httpx.Client] = []

    def make() -> tuple[int, httpx.Client]:
        created = admin.post("/admin/tenants", json={"name": f"e2e-users-{uuid.uuid4().hex[:10]}"})
        assert created.status_code == 201, created.text
        body = created.json()
        client = httpx.Client(
            base_url=gateway.url,
            headers={"Authorization": f"Bearer {body['api_key']}"},
            timeout=10,
            follow_redirects=False,
        )
        clients.append(client)
        return int(body["id"]), client

    yield make
    for client in clients:
        client.close()


def users_of(database: Database, tenant_id: int) -> int:
    """How many users rows `tenant_id` has, asked as that tenant (works under FORCE RLS too)."""
    conn = psycopg2.connect(database.url)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(f"SET LOCAL app.tenant_id = '{int(tenant_id)}'")
            cur.execute("SELECT count(*) FROM users WHERE tenant_id = %s", (tenant_id,))
            row = cur.fetchone()
    finally:
        conn.close()
    assert row is not None
    return int(row[0])


def test_form_post_and_both_collection_paths_work_without_redirect(
    tenant_client: Callable[[], tuple[int, httpx.Client]],
) -> None:
    tenant, client = tenant_client()
    created = client.post("/users/", data={"name": "Alice"})
    assert created.status_code == 201, created.text
    assert created.json()["tenant_id"] == tenant and created.json()["name"] == "Alice"
    for path in ("/users", "/users/"):
        listed = client.get(path)
        assert listed.status_code == 200, listed.text
        assert [u["name"] for u in listed.json()] == ["Alice"]


def test_next_link_points_at_the_gateway_path_not_the_upstream(
    tenant_client: Callable[[], tuple[int, httpx.Client]],
) -> None:
    _, client = tenant_client()
    ids = [client.post("/users", json={"name": f"u{n}"}).json()["id"] for n in range(3)]
    first = client.get("/users?limit=2")
    link = first.headers["link"]
    assert re.fullmatch(rf'</users\?limit=2&after={ids[1]}>; rel="next"', link), link
    rest = client.get(f"/users?limit=2&after={ids[1]}")
    assert [u["id"] for u in rest.json()] == [ids[2]] and "link" not in rest.headers


def test_other_tenants_user_is_404_never_403(
    tenant_client: Callable[[], tuple[int, httpx.Client]],
) -> None:
    _, alice_co = tenant_client()
    _, intruder = tenant_client()
    victims = [
        alice_co.post("/users", json={"name": f"Victim{n}", "email": f"v{n}@a.example"}).json()
        for n in (1, 2)
    ]
    for victim in victims:
        for method, body in (("GET", None), ("PATCH", {"name": "pwned"}), ("DELETE", None)):
            response = intruder.request(method, f"/users/{victim['id']}", json=body)
            assert response.status_code == 404, (method, response.text)
            assert "Victim" not in response.text
    assert intruder.get("/users").json() == []
    assert [alice_co.get(f"/users/{v['id']}").json() for v in victims] == victims


def test_an_id_both_tenants_hold_names_each_tenants_own_user(
    tenant_client: Callable[[], tuple[int, httpx.Client]],
) -> None:
    _, alice_co = tenant_client()
    _, other = tenant_client()
    victims = [alice_co.post("/users", json={"name": f"Victim{n}"}).json() for n in (1, 2)]
    own = other.post("/users", json={"name": "Own"}).json()
    assert own["id"] == victims[0]["id"] == 1
    # Id 1 is the caller's own user for each tenant; id 2 exists only for alice_co.
    assert other.get("/users/1").json() == own
    assert other.patch("/users/1", json={"name": "Own renamed"}).json()["name"] == "Own renamed"
    assert other.get("/users/2").status_code == 404
    assert "Victim" not in other.get("/users").text
    assert other.delete("/users/1").status_code == 204
    assert [alice_co.get(f"/users/{v['id']}").json() for v in victims] == victims


def test_other_tenants_activity_leaves_no_gap_in_a_tenants_ids(
    tenant_client: Callable[[], tuple[int, httpx.Client]],
) -> None:
    _, watcher = tenant_client()
    _, busy = tenant_client()
    first = watcher.post("/users", json={"name": "first"}).json()["id"]
    for n in range(50):
        assert busy.post("/users", json={"name": f"busy{n}"}).status_code == 201
    second = watcher.post("/users", json={"name": "second"}).json()["id"]
    # A shared sequence would show a gap of 50 here: the busy tenant's activity.
    assert (first, second) == (1, 2)


def test_same_email_in_two_tenants_but_409_within_one(
    tenant_client: Callable[[], tuple[int, httpx.Client]],
) -> None:
    _, first = tenant_client()
    _, second = tenant_client()
    assert first.post("/users", json={"name": "A", "email": "dup@x.example"}).status_code == 201
    assert second.post("/users", json={"name": "B", "email": "dup@x.example"}).status_code == 201
    again = first.post("/users", json={"name": "C", "email": "DUP@x.example"})
    assert again.status_code == 409 and again.json()["detail"]


def test_invalid_user_is_422_through_the_gateway(
    tenant_client: Callable[[], tuple[int, httpx.Client]],
) -> None:
    _, client = tenant_client()
    response = client.post("/users", json={"name": ""})
    assert response.status_code == 422 and response.json()["detail"]


@pytest.mark.parametrize(
    "email", ["alice@acme.test", "bob@x.example", "carol@example.com", "dave@mail.acme.io"]
)
def test_example_addresses_the_docs_use_are_accepted(
    tenant_client: Callable[[], tuple[int, httpx.Client]], email: str
) -> None:
    _, client = tenant_client()
    created = client.post("/users", json={"name": "Alice", "email": email})
    assert created.status_code == 201, created.text
    assert created.json()["email"] == email


@pytest.mark.parametrize(
    "email", ["not-an-email", "a@b@c.test", "x@host.invalid", "x@localhost", "x@printer.local"]
)
def test_addresses_that_can_never_be_a_mailbox_are_422(
    tenant_client: Callable[[], tuple[int, httpx.Client]], email: str
) -> None:
    _, client = tenant_client()
    refused = client.post("/users", json={"name": "X", "email": email})
    assert refused.status_code == 422, refused.text
    assert "email" in str(refused.json()["detail"])


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("OPTIONS", "/users", "GET, POST"),
        ("PUT", "/users/", "GET, POST"),
        ("OPTIONS", "/users/1", "GET, PATCH, DELETE"),
        ("POST", "/users/1", "GET, PATCH, DELETE"),
    ],
)
def test_a_405_lists_every_method_the_resource_serves(
    tenant_client: Callable[[], tuple[int, httpx.Client]], method: str, path: str, allow: str
) -> None:
    _, client = tenant_client()
    response = client.request(method, path)
    assert response.status_code == 405, response.text
    assert response.headers["allow"] == allow
    assert response.json() == {"detail": "Method Not Allowed"}


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "OPTIONS"])
@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
def test_an_unknown_method_on_the_gateways_own_paths_is_405_not_a_tenant_route(
    gateway: Any, method: str, path: str
) -> None:
    response = httpx.request(method, f"{gateway.url}{path}", timeout=10)
    assert response.status_code == 405, response.text
    assert response.headers["allow"] == "GET"


def test_deleting_a_tenant_removes_its_users_and_nobody_elses(
    tenant_client: Callable[[], tuple[int, httpx.Client]], admin: httpx.Client, database: Database
) -> None:
    doomed, doomed_client = tenant_client()
    kept, kept_client = tenant_client()
    for client in (doomed_client, kept_client):
        for n in range(3):
            assert client.post("/users", json={"name": f"u{n}"}).status_code == 201
    kept_before = kept_client.get("/users").json()
    assert users_of(database, doomed) == 3

    assert admin.delete(f"/admin/tenants/{doomed}?purge=true").status_code == 204

    assert users_of(database, doomed) == 0
    assert users_of(database, kept) == 3
    assert kept_client.get("/users").json() == kept_before
    assert doomed_client.get("/users").status_code == 401
