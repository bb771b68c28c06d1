"""The tenants of the run: one large one, built in SQL in batches, and a few small neighbours.

The large tenant's rows go in as the services' role with `app.tenant_id` set, like any
service's writes: forced RLS checks every row, and the row-numbering trigger moves the
tenant's id counter past the explicit ids, so users created later through the API get the
next ids.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable

import httpx
import psycopg2

from bench.lifecycle.traffic import Tenant

# Each row's trigger updates the tenant's counter row: in one transaction those versions
# pile up, so large batches slow down (50,000: 10x slower per row than 2,000 here).
BUILD_BATCH_ROWS = 2_000
NEIGHBOUR_USERS = 20


def create_tenant(admin: httpx.Client, label: str) -> tuple[int, str]:
    """A tenant with no rate limit or in-flight cap the run could meet; (id, first key)."""
    made = admin.post(
        "/admin/tenants",
        json={
            "name": f"lifecycle-{secrets.token_hex(3)}-{label}",
            "rate_limit_per_second": 1_000_000,
            "max_in_flight": 0,
        },
    )
    made.raise_for_status()
    body = made.json()
    return int(body["id"]), str(body["api_key"])


def neighbour(admin: httpx.Client, gateway_url: str, label: str) -> Tenant:
    """A small tenant with NEIGHBOUR_USERS users made through the API."""
    tenant_id, key = create_tenant(admin, label)
    headers = {"Authorization": f"Bearer {key}"}
    ids = []
    with httpx.Client(base_url=gateway_url, headers=headers, timeout=30) as client:
        for n in range(NEIGHBOUR_USERS):
            made = client.post("/users", json={"name": f"{label} user {n}"})
            made.raise_for_status()
            ids.append(int(made.json()["id"]))
    return Tenant(tenant_id, key, ids)


def fill(
    app_url: str, owner_url: str, tenant_id: int, rows: int, say: Callable[[str], None]
) -> float:
    """Give the tenant `rows` users (ids 1..rows) as the services' role; the seconds it took."""
    started = time.monotonic()
    conn = psycopg2.connect(app_url, application_name="lifecycle-build")
    try:
        for first in range(1, rows + 1, BUILD_BATCH_ROWS):
            last = min(rows, first + BUILD_BATCH_ROWS - 1)
            with conn, conn.cursor() as cur:
                cur.execute("SELECT set_config('app.tenant_id', %s, true)", (str(tenant_id),))
                # The role's 4 s statement timeout is for requests; a bulk batch may take longer
                # on a loaded machine.
                cur.execute("SET LOCAL statement_timeout = '120s'")
                cur.execute(
                    "INSERT INTO users (tenant_id, id, name, email) "
                    "SELECT %s, n, 'User ' || n, 'user' || n || '@example.com' "
                    "FROM generate_series(%s, %s) AS n",
                    (tenant_id, first, last),
                )
            if last % 100_000 == 0:
                say(f"   built {last:,} rows")
    finally:
        conn.close()
    # Fresh statistics, as autovacuum would give a table that grew this much.
    owner = psycopg2.connect(owner_url)
    try:
        owner.autocommit = True
        with owner.cursor() as cur:
            cur.execute("VACUUM ANALYZE users")
    finally:
        owner.close()
    return time.monotonic() - started
