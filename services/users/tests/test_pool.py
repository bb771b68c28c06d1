"""The service's PostgreSQL connections under bursts: bounded, and kept rather than churned.

An overflow connection closed on return meant, past 10 requests at once, a new PostgreSQL
backend (a fork and an authentication) per request: a quarter of the service's time.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import psycopg2
import pytest

from kit.testing import Database, new_database
from services.tenancy.runtime import POOL_SIZE
from services.tenancy.signing import sign_headers
from services.users.config import SERVICE_NAME

BURST = 2 * POOL_SIZE


@pytest.fixture(scope="module")
def pool_db(postgres_server: Any, kit_workdir: Path) -> Database:
    """A database of its own: every connection to it is the service's under test."""
    return new_database(postgres_server, log_dir=kit_workdir / "logs", name="users_pool")


def _backends(db: Database) -> set[tuple[int, Any]]:
    conn = psycopg2.connect(db.url.rsplit("/", 1)[0] + "/postgres")
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT pid, backend_start FROM pg_stat_activity "
                "WHERE datname = %s AND application_name = %s",
                (db.name, SERVICE_NAME),
            )
            return set(cur.fetchall())
    finally:
        conn.close()


async def _burst(url: str, secret: str, tenant: int) -> list[int]:
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:

        async def one() -> int:
            headers = sign_headers(
                secret,
                destination="/users",
                tenant_id=tenant,
                request_id=uuid.uuid4().hex,
                method="GET",
                target="/users",
            )
            return (await client.get("/users", headers=headers)).status_code

        return list(await asyncio.gather(*(one() for _ in range(BURST))))


def _waiting_on_the_lock(db: Database) -> int:
    conn = psycopg2.connect(db.url.rsplit("/", 1)[0] + "/postgres")
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = %s AND application_name = %s AND wait_event_type = 'Lock'",
                (db.name, SERVICE_NAME),
            )
            row = cur.fetchone()
            return int(row[0]) if row else 0
    finally:
        conn.close()


def _burst_behind_a_lock(db: Database, url: str, secret: str, tenant: int) -> list[int]:
    """BURST reads at once while the table is locked: the lock is released once every pooled
    connection waits on it (or after 2 s), so all of them were busy at the same time."""
    locker = psycopg2.connect(db.url)
    with locker.cursor() as cur:
        cur.execute("LOCK TABLE users IN ACCESS EXCLUSIVE MODE")

    def release_when_all_wait() -> None:
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline and _waiting_on_the_lock(db) < POOL_SIZE:
            time.sleep(0.05)
        locker.rollback()

    release = threading.Thread(target=release_when_all_wait)
    release.start()
    try:
        return asyncio.run(_burst(url, secret, tenant))
    finally:
        release.join()
        locker.close()


def test_bursts_reuse_the_same_bounded_set_of_connections(
    start_service: Any, pool_db: Database, secrets: Any
) -> None:
    # One tenant's burst can fill the whole pool only with its share of the pool lifted
    # (TENANT_FAIRNESS=off): what is measured here is the pool, not the per-tenant share.
    users = start_service(
        "users", env={"APP_DATABASE_URL": pool_db.app_url, "TENANT_FAIRNESS": "off"}
    )
    conn = psycopg2.connect(pool_db.url)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("INSERT INTO tenants (name) VALUES ('pool') RETURNING id")
        row = cur.fetchone()
    conn.close()
    assert row is not None
    tenant = int(row[0])

    # The reads have a pool of their own (services/tenancy/asyncread.py); what the writes'
    # pool opened at start-up (the audit) is not the reads' to count.
    before = _backends(pool_db)
    first = _burst_behind_a_lock(pool_db, users.url, secrets.signing_secret, tenant)
    kept = _backends(pool_db) - before
    time.sleep(0.2)
    second = _burst_behind_a_lock(pool_db, users.url, secrets.signing_secret, tenant)
    kept_again = _backends(pool_db) - before

    assert first == second == [200] * BURST
    # The burst had many connections busy at once (a pool that kept only half of its ceiling
    # closed the rest on return)...
    assert POOL_SIZE // 2 < len(kept) <= POOL_SIZE
    # ...and kept every one of them: the second burst reused them instead of reconnecting.
    assert kept <= kept_again and len(kept_again) <= POOL_SIZE
