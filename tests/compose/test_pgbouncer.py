"""PgBouncer in transaction mode never carries one tenant's context into another's request.

The test stack runs PgBouncer with a pool of 2 server connections per role
(PGBOUNCER_POOL_SIZE in run.py) under more client connections than that, so consecutive
transactions of different tenants share the same PostgreSQL sessions.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator

import httpx
import psycopg2
import pytest
from compose_stack import ComposeStack

CLIENTS_PER_TENANT = 8
ROUNDS = 15


@pytest.fixture
def lb(stack: ComposeStack, admin_token: str) -> Iterator[httpx.Client]:
    """An admin client on the scale profile's load balancer (every replica behind it)."""
    with httpx.Client(
        base_url=stack.url("lb", 8000),
        headers={"Authorization": f"Bearer {admin_token}"},
        timeout=10,
    ) as client:
        yield client


def _pgbouncer_show(stack: ComposeStack, what: str) -> list[dict]:
    settings = stack.settings
    url = stack.pgbouncer_url(
        user="tenantkit_gateway", password=settings["GATEWAY_DB_PASSWORD"], database="pgbouncer"
    )
    conn = psycopg2.connect(url)
    conn.autocommit = True  # the admin console takes no transactions
    try:
        with conn.cursor() as cur:
            cur.execute(f"SHOW {what}")
            columns = [c[0] for c in cur.description]
            return [dict(zip(columns, row, strict=True)) for row in cur.fetchall()]
    finally:
        conn.close()


def _tenant_worker(
    *,
    url: str,
    tenant: dict,
    foreign_ids: list[int],
    prefix: str,
    marker: str,
    failures: list[str],
) -> None:
    """Create, list and read users as one tenant, and check every answer is its own."""
    headers = {"Authorization": f"Bearer {tenant['api_key']}"}
    own: list[int] = []
    with httpx.Client(base_url=url, headers=headers, timeout=10) as client:
        for round_no in range(ROUNDS):
            created = client.post("/users", json={"name": f"{marker}-{round_no}"})
            if created.status_code != 201 or created.json()["tenant_id"] != tenant["id"]:
                failures.append(f"create as {tenant['id']}: {created.status_code} {created.text}")
                continue
            own.append(created.json()["id"])
            listed = client.get("/users", params={"limit": 500})
            if listed.status_code != 200:
                failures.append(f"list as {tenant['id']}: {listed.status_code} {listed.text}")
                continue
            for row in listed.json():
                if row["tenant_id"] != tenant["id"] or not row["name"].startswith(prefix):
                    failures.append(f"tenant {tenant['id']} saw {row}")
            one = client.get(f"/users/{own[-1]}")
            if one.status_code != 200 or one.json()["tenant_id"] != tenant["id"]:
                failures.append(f"read own as {tenant['id']}: {one.status_code} {one.text}")
            # Ids are per tenant: the other tenant's seed id is this tenant's seed id too,
            # so the answer must be this tenant's own seed row, never the other's.
            same_id = client.get(f"/users/{foreign_ids[round_no % len(foreign_ids)]}")
            if same_id.status_code != 200 or same_id.json()["name"] != f"{prefix}-seed":
                failures.append(f"tenant {tenant['id']} read a foreign user: {same_id.text}")


def test_tenant_context_never_leaks_through_transaction_pooling(
    stack: ComposeStack, lb: httpx.Client
) -> None:
    tenants = [
        lb.post("/admin/tenants", json={"name": f"pool-{uuid.uuid4().hex[:10]}"}).json()
        for _ in range(2)
    ]
    prefixes = {t["id"]: f"t{t['id']}-{uuid.uuid4().hex[:8]}" for t in tenants}
    seeded: dict[int, list[int]] = {}
    for tenant in tenants:
        headers = {"Authorization": f"Bearer {tenant['api_key']}"}
        response = lb.post(
            "/users", json={"name": f"{prefixes[tenant['id']]}-seed"}, headers=headers
        )
        assert response.status_code == 201, response.text
        seeded[tenant["id"]] = [response.json()["id"]]

    failures: list[str] = []
    threads = []
    for i in range(CLIENTS_PER_TENANT):
        for tenant, other in ((tenants[0], tenants[1]), (tenants[1], tenants[0])):
            threads.append(
                threading.Thread(
                    target=_tenant_worker,
                    kwargs={
                        "url": str(lb.base_url),
                        "tenant": tenant,
                        "foreign_ids": seeded[other["id"]],
                        "prefix": prefixes[tenant["id"]],
                        "marker": f"{prefixes[tenant['id']]}-c{i}",
                        "failures": failures,
                    },
                )
            )
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures, failures[:10]

    # The contention was real: more client connections of the services' role than server
    # connections, from more than one users replica.
    pool = next(p for p in _pgbouncer_show(stack, "POOLS") if p["user"] == "tenantkit_app")
    servers = sum(pool[k] for k in ("sv_active", "sv_idle", "sv_used", "sv_tested", "sv_login"))
    clients = [c for c in _pgbouncer_show(stack, "CLIENTS") if c["user"] == "tenantkit_app"]
    assert servers <= 2, pool
    assert len(clients) > servers, (len(clients), pool)
    assert len({c["addr"] for c in clients}) >= 2, clients


def test_pooled_server_sessions_hold_no_tenant_after_the_services_used_them(
    stack: ComposeStack, lb: httpx.Client
) -> None:
    tenant = lb.post("/admin/tenants", json={"name": f"pool-{uuid.uuid4().hex[:10]}"}).json()
    headers = {"Authorization": f"Bearer {tenant['api_key']}"}
    for n in range(20):
        assert lb.post("/users", json={"name": f"u{n}"}, headers=headers).status_code == 201
        assert lb.get("/users", headers=headers).status_code == 200

    # Hold both pooled server connections at once (pool size 2), so each is checked.
    password = stack.settings["APP_DB_PASSWORD"]
    url = stack.pgbouncer_url(user="tenantkit_app", password=password)
    conns = [psycopg2.connect(url) for _ in range(2)]
    try:
        pids = set()
        for conn in conns:
            with conn.cursor() as cur:
                cur.execute(
                    "SELECT pg_backend_pid(), current_setting('app.tenant_id', true), "
                    "(SELECT count(*) FROM users)"
                )
                pid, setting, visible = cur.fetchone()
            pids.add(pid)
            assert setting in (None, ""), f"server session {pid} still holds tenant {setting}"
            assert visible == 0
        assert len(pids) == 2
    finally:
        for conn in conns:
            conn.close()
