"""PostgreSQL gone or stuck: the service answers 503 fast (SPEC: within 5 s), then recovers."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg2
import psycopg2.extensions
import pytest

from kit.testing import Database, new_database
from services.users.tests.conftest import SignedClient

BOUND_SECONDS = 5.0


@pytest.fixture(scope="module")
def outage_db(postgres_server: Any, kit_workdir: Path) -> Database:
    """A database of its own, so that cutting it off harms no other test."""
    return new_database(postgres_server, log_dir=kit_workdir / "logs", name="users_outage")


@pytest.fixture
def outage_owner(outage_db: Database) -> Iterator[psycopg2.extensions.connection]:
    # Connected to another database: this one is about to refuse every connection.
    conn = psycopg2.connect(outage_db.url.rsplit("/", 1)[0] + "/postgres")
    conn.autocommit = True
    yield conn
    with conn.cursor() as cur:
        cur.execute(f'ALTER DATABASE "{outage_db.name}" ALLOW_CONNECTIONS true')
    conn.close()


@pytest.fixture
def outage_api(
    start_service: Callable[..., Any], outage_db: Database, secrets: Any
) -> Iterator[SignedClient]:
    users = start_service("users", env={"APP_DATABASE_URL": outage_db.app_url})
    with httpx.Client(base_url=users.url, timeout=30) as client:
        yield SignedClient(client, secrets.signing_secret)


def _tenant(url: str) -> int:
    conn = psycopg2.connect(url)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(
            "INSERT INTO tenants (name) VALUES (%s) RETURNING id", (f"outage-{time.time_ns()}",)
        )
        row = cur.fetchone()
    conn.close()
    assert row is not None
    return int(row[0])


def _timed(call: Callable[[], httpx.Response]) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = call()
    return response, time.monotonic() - started


def test_database_refusing_connections_gives_a_fast_503_then_recovery(
    outage_api: SignedClient, outage_owner: psycopg2.extensions.connection, outage_db: Database
) -> None:
    tenant = _tenant(outage_db.url)
    assert outage_api.request("POST", "/users", tenant, json={"name": "Before"}).status_code == 201
    with outage_owner.cursor() as cur:
        cur.execute(f'ALTER DATABASE "{outage_db.name}" ALLOW_CONNECTIONS false')
        cur.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
            (outage_db.name,),
        )
    response, took = _timed(lambda: outage_api.request("GET", "/users", tenant))
    assert response.status_code == 503 and response.json() == {"detail": "database unavailable"}
    assert took < BOUND_SECONDS
    ready, took = _timed(lambda: outage_api.client.get("/readyz"))
    assert ready.status_code == 503 and "postgresql" in ready.json()["missing"]
    assert took < BOUND_SECONDS

    with outage_owner.cursor() as cur:
        cur.execute(f'ALTER DATABASE "{outage_db.name}" ALLOW_CONNECTIONS true')
    assert outage_api.client.get("/readyz").status_code == 200
    listed = outage_api.request("GET", "/users", tenant)
    assert listed.status_code == 200 and [u["name"] for u in listed.json()] == ["Before"]


def test_query_stuck_behind_a_lock_gives_503_within_the_bound(
    outage_api: SignedClient, outage_db: Database
) -> None:
    tenant = _tenant(outage_db.url)
    locker = psycopg2.connect(outage_db.url)
    try:
        with locker.cursor() as cur:
            cur.execute("LOCK TABLE users IN ACCESS EXCLUSIVE MODE")
            response, took = _timed(lambda: outage_api.request("GET", "/users", tenant))
    finally:
        locker.rollback()
        locker.close()
    assert response.status_code == 503 and took < BOUND_SECONDS
    assert outage_api.request("GET", "/users", tenant).status_code == 200
