"""Live moves (issue 11) through the gateway: both ways under concurrent writes, every
acknowledged write where it should be and nowhere else; a failed move changes nothing."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from placed_stack import DEDICATED, PlacedStack, placed_stack, rows

from gateway.invalidation import SECOND_PASS_DELAY_SECONDS
from gateway.tests.factories import bearer, unique_name
from kit.procs import ROOT, child_env
from kit.servers import PgServer
from kit.stacks import Secrets


@pytest.fixture(scope="module")
def stack(postgres_server: PgServer, secrets: Secrets, kit_workdir: Path) -> Iterator[PlacedStack]:
    with placed_stack(postgres_server, secrets, kit_workdir, label="moves") as placed:
        yield placed


@pytest.fixture(scope="module")
def admin(stack: PlacedStack) -> Iterator[httpx.Client]:
    with stack.admin_client() as client:
        yield client


def make_tenant(admin: httpx.Client, placement: str = "shared") -> dict[str, Any]:
    made = admin.post("/admin/tenants", json={"name": unique_name(), "placement": placement})
    assert made.status_code == 201, made.text
    return made.json()  # type: ignore[no-any-return]


class Writers:
    """Clients that keep creating, renaming and deleting users; they remember what was acked."""

    def __init__(self, stack: PlacedStack, key: str, threads: int = 3) -> None:
        self.url, self.key = stack.gateway.url, key
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.rows: dict[int, str] = {}  # id -> name, as acknowledged
        self.failures: list[str] = []
        self.acked = 0
        self.threads = [threading.Thread(target=self._write, args=(n,)) for n in range(threads)]

    def __enter__(self) -> Writers:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join()

    def _write(self, worker: int) -> None:
        n = 0
        with httpx.Client(base_url=self.url, headers=bearer(self.key), timeout=15) as client:
            while not self.stop.is_set():
                n += 1
                name = f"w{worker}-{n}"
                made = client.post("/users", json={"name": name})
                if made.status_code != 201:
                    self._failed("POST", made)
                    continue
                user_id = made.json()["id"]
                with self.lock:
                    self.rows[user_id] = name
                    self.acked += 1
                if n % 3 == 0:
                    renamed = client.patch(f"/users/{user_id}", json={"name": name + "-r"})
                    if renamed.status_code != 200:
                        self._failed("PATCH", renamed)
                    else:
                        with self.lock:
                            self.rows[user_id] = name + "-r"
                if n % 5 == 0:
                    gone = client.delete(f"/users/{user_id}")
                    if gone.status_code != 204:
                        self._failed("DELETE", gone)
                    else:
                        with self.lock:
                            del self.rows[user_id]

    def _failed(self, method: str, response: httpx.Response) -> None:
        with self.lock:
            self.failures.append(f"{method} {response.status_code} {response.text[:120]}")

    def wait_for_acks(self, more: int) -> None:
        target = self.acked + more
        deadline = time.monotonic() + 30
        while self.acked < target:
            assert time.monotonic() < deadline, "writers made no progress"
            time.sleep(0.01)


def tenant_with_rows(stack: PlacedStack, admin: httpx.Client, count: int) -> dict[str, Any]:
    """A tenant in shared holding users 1..count, written straight into the table."""
    tenant = make_tenant(admin)
    rows(
        stack.shared.url,
        "INSERT INTO users (tenant_id, id, name) SELECT %s, g, 'u' || g "
        "FROM generate_series(1, %s) g",
        tenant["id"],
        count,
    )
    return tenant


def start_move(admin: httpx.Client, tenant_id: int, to: str) -> dict[str, Any]:
    """The move begun (202): its first record."""
    started = admin.post(f"/admin/tenants/{tenant_id}/move", json={"to": to})
    assert started.status_code == 202, started.text
    return started.json()  # type: ignore[no-any-return]


def move(admin: httpx.Client, tenant_id: int, to: str) -> dict[str, Any]:
    start_move(admin, tenant_id, to)
    deadline = time.monotonic() + 120
    while True:
        state = admin.get(f"/admin/tenants/{tenant_id}/move").json()
        if state["state"] in ("done", "failed"):
            return state  # type: ignore[no-any-return]
        assert time.monotonic() < deadline, state
        time.sleep(0.05)


def stored(stack: PlacedStack, placement: str, tenant_id: int) -> dict[int, str]:
    found = rows(
        stack.url_of(placement), "SELECT id, name FROM users WHERE tenant_id = %s", tenant_id
    )
    return {int(i): str(n) for i, n in found}  # type: ignore[call-overload]


def test_a_tenant_moves_out_and_back_under_writes_losing_and_duplicating_nothing(
    stack: PlacedStack, admin: httpx.Client
) -> None:
    tenant = make_tenant(admin)
    neighbour = make_tenant(admin)
    with httpx.Client(
        base_url=stack.gateway.url, headers=bearer(neighbour["api_key"]), timeout=10
    ) as client:
        assert client.post("/users", json={"name": "next door"}).status_code == 201
    with Writers(stack, tenant["api_key"]) as writers:
        writers.wait_for_acks(150)
        out = move(admin, tenant["id"], DEDICATED)
        writers.wait_for_acks(50)
        back = move(admin, tenant["id"], "shared")
        writers.wait_for_acks(50)
    print(f"\nmove out: {out}\nmove back: {back}")
    for done, to in ((out, DEDICATED), (back, "shared")):
        assert done["state"] == "done" and done["to"] == to, done
        assert done["rows_copied"] > 0 and done["write_pause_ms"] is not None
    # Zero failed requests for the moving tenant: the cut-over held them, it did not refuse.
    assert writers.failures == []
    # Every acknowledged write is in shared, with its id, and nothing else is; none is left
    # in the dedicated database.
    assert stored(stack, "shared", tenant["id"]) == writers.rows
    assert stored(stack, DEDICATED, tenant["id"]) == {}
    with httpx.Client(
        base_url=stack.gateway.url, headers=bearer(tenant["api_key"]), timeout=10
    ) as client:
        listed, after = [], 0
        while True:
            page = client.get("/users", params={"limit": 500, "after": after}).json()
            listed += page
            if len(page) < 500:
                break
            after = page[-1]["id"]
        assert {u["id"]: u["name"] for u in listed} == writers.rows
        # Ids go on where they were: the next user's id is past every id handed out.
        fresh = client.post("/users", json={"name": "after the moves"}).json()
        assert fresh["id"] > max(writers.rows)
    # The neighbour, in shared all along, was not touched.
    assert list(stored(stack, "shared", neighbour["id"]).values()) == ["next door"]
    fetched = admin.get(f"/admin/tenants/{tenant['id']}").json()
    assert fetched["placement"] == "shared"


def test_a_failed_move_leaves_the_tenant_served_where_it_was(
    stack: PlacedStack, admin: httpx.Client
) -> None:
    tenant = make_tenant(admin)
    key = bearer(tenant["api_key"])
    with httpx.Client(base_url=stack.gateway.url, headers=key, timeout=10) as client:
        for n in range(20):
            assert client.post("/users", json={"name": f"u{n}"}).status_code == 201
        before = stored(stack, "shared", tenant["id"])
        # The target refuses this tenant's rows: the copy fails before anything switched.
        refuse = f"CHECK (tenant_id <> {int(tenant['id'])}) NOT VALID"
        rows(stack.dedicated_url, f"ALTER TABLE users ADD CONSTRAINT no_entry {refuse}")
        try:
            failed = move(admin, tenant["id"], DEDICATED)
        finally:
            rows(stack.dedicated_url, "ALTER TABLE users DROP CONSTRAINT no_entry")
        assert failed["state"] == "failed" and failed["error"], failed
        assert admin.get(f"/admin/tenants/{tenant['id']}").json()["placement"] == "shared"
        assert client.post("/users", json={"name": "still here"}).status_code == 201
        assert len(client.get("/users").json()) == 21
    assert stored(stack, "shared", tenant["id"]).items() >= before.items()
    assert stored(stack, DEDICATED, tenant["id"]) == {}
    # And it can move once the target is reachable again.
    assert move(admin, tenant["id"], DEDICATED)["state"] == "done"
    assert len(stored(stack, DEDICATED, tenant["id"])) == 21


def test_move_requests_that_cannot_start_are_refused(
    stack: PlacedStack, admin: httpx.Client
) -> None:
    tenant = make_tenant(admin, DEDICATED)
    assert admin.get(f"/admin/tenants/{tenant['id']}/move").status_code == 404
    unknown = admin.post(f"/admin/tenants/{tenant['id']}/move", json={"to": "nowhere"})
    assert unknown.status_code == 422
    assert unknown.json()["detail"][0]["loc"] == ["body", "to"]
    already = admin.post(f"/admin/tenants/{tenant['id']}/move", json={"to": DEDICATED})
    assert already.status_code == 409
    missing = admin.post("/admin/tenants/999999/move", json={"to": "shared"})
    assert missing.status_code == 404


def test_the_cli_moves_a_tenant_and_the_gateway_serves_it_from_there(
    stack: PlacedStack, admin: httpx.Client
) -> None:
    tenant = make_tenant(admin)
    # After the create's own repeated invalidation: the writes below leave the tenant cached
    # (placement shared), so only the CLI's invalidation can send the next request elsewhere.
    time.sleep(SECOND_PASS_DELAY_SECONDS + 0.3)
    with httpx.Client(
        base_url=stack.gateway.url, headers=bearer(tenant["api_key"]), timeout=10
    ) as client:
        for n in range(10):
            assert client.post("/users", json={"name": f"u{n}"}).status_code == 201
        moved = subprocess.run(
            [sys.executable, "-m", "gateway.cli", "tenants", "move", str(tenant["id"])]
            + ["--to", DEDICATED],
            env=child_env(
                {
                    "DATABASE_URL": stack.shared.url,
                    "TENANT_DATABASES": stack.tenant_databases,
                    "REDIS_URL": stack.redis_url,
                }
            ),
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert moved.returncode == 0, moved.stderr
        assert json.loads(moved.stdout)["state"] == "done"
        assert "cut over to dedicated" in moved.stderr
        # The gateway was told: the next request goes to the dedicated placement.
        assert client.post("/users", json={"name": "after"}).status_code == 201
        assert len(client.get("/users").json()) == 11
    assert len(stored(stack, DEDICATED, tenant["id"])) == 11
    assert stored(stack, "shared", tenant["id"]) == {}
    assert admin.get(f"/admin/tenants/{tenant['id']}/move").json()["state"] == "done"


def test_a_second_move_of_a_tenant_is_refused_while_the_first_runs(
    stack: PlacedStack, admin: httpx.Client
) -> None:
    # Enough rows that the copy takes a while (about a second here) after the 202.
    tenant = tenant_with_rows(stack, admin, 3000)
    assert start_move(admin, tenant["id"], DEDICATED)["state"] in (
        "copying",
        "catching_up",
        "cutover",
    )
    second = admin.post(f"/admin/tenants/{tenant['id']}/move", json={"to": DEDICATED})
    assert second.status_code == 409
    assert second.json()["detail"] == "a move of this tenant is running"
    deadline = time.monotonic() + 60
    while admin.get(f"/admin/tenants/{tenant['id']}/move").json()["state"] != "done":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert len(stored(stack, DEDICATED, tenant["id"])) == 3000


def test_an_id_deleted_just_before_a_move_is_not_handed_out_again_after_it(
    stack: PlacedStack, admin: httpx.Client
) -> None:
    tenant = make_tenant(admin)
    with httpx.Client(
        base_url=stack.gateway.url, headers=bearer(tenant["api_key"]), timeout=10
    ) as client:
        made = [client.post("/users", json={"name": f"u{n}"}).json()["id"] for n in range(3)]
        assert made == [1, 2, 3]
        assert client.delete("/users/3").status_code == 204
        # The target's counter must come from the source's (3), not from the rows moved (2).
        assert move(admin, tenant["id"], DEDICATED)["state"] == "done"
        assert client.post("/users", json={"name": "after"}).json()["id"] == 4
        # And back: shared's own counter (3, from before) is behind the source's (4).
        assert client.delete("/users/4").status_code == 204
        assert move(admin, tenant["id"], "shared")["state"] == "done"
        assert client.post("/users", json={"name": "back"}).json()["id"] == 5
