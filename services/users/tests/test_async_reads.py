"""The hot reads on psycopg 3 (services/tenancy/asyncread.py): each wall, the pool, the timeout."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import psycopg2.extensions
import pytest
from psycopg.pq import Trace
from sqlalchemy import Column, Integer, MetaData, Table, func, select

from kit.testing import Database
from services.tenancy.asyncread import TenantRead, TenantReader, tenant_read
from services.tenancy.dburl import plain, to_psycopg2
from services.tenancy.readpool import ReadPool
from services.tenancy.runtime import create_read_pool
from services.users.models import User
from services.users.tests.conftest import owner_rows

USERS = User.__table__
NAMES = tenant_read(select(USERS.c.name).order_by(USERS.c.name))


@pytest.fixture
def two_tenants(
    owner: psycopg2.extensions.connection, make_tenant: Callable[[], int]
) -> tuple[int, int]:
    """Tenants A (users a0, a1) and B (b0, b1, b2), written by the owner."""
    a, b = make_tenant(), make_tenant()
    for tenant, prefix, count in ((a, "a", 2), (b, "b", 3)):
        for n in range(count):
            owner_rows(
                owner, "INSERT INTO users (tenant_id, name) VALUES (%s, %s)", tenant, f"{prefix}{n}"
            )
    return a, b


def _pool(url: str, size: int = 1) -> ReadPool:
    return ReadPool(plain(to_psycopg2(url)), size=size, timeout=1.0)


async def _names(pool: ReadPool, tenant: int, read: TenantRead = NAMES) -> list[str]:
    reader = TenantReader(pool, tenant_id=tenant, statement_timeout_ms=4000)
    return [row["name"] for row in await reader.fetch(read)]


async def _left_on_connection(pool: ReadPool) -> tuple[Any, ...]:
    async with pool.connection() as conn:
        cursor = await conn.execute(
            "SELECT current_setting('app.tenant_id', true), count(*) FROM users"
        )
        row = await cursor.fetchone()
        await conn.rollback()
    assert row is not None
    return tuple(row)


def test_reads_on_one_pooled_connection_see_their_own_tenant_and_leave_none(
    two_tenants: tuple[int, int], database: Database
) -> None:
    a, b = two_tenants

    async def scenario() -> tuple[list[list[str]], tuple[Any, ...]]:
        pool = _pool(database.app_url)  # one connection: every read reuses it
        try:
            seen = [await _names(pool, tenant) for tenant in (a, b, a)]
            return seen, await _left_on_connection(pool)
        finally:
            await pool.close()

    seen, left = asyncio.run(scenario())
    assert seen == [["a0", "a1"], ["b0", "b1", "b2"], ["a0", "a1"]]
    # SET LOCAL ended with the read's transaction: the connection reads '' and no rows.
    assert left == ("", 0)


def test_the_core_predicate_alone_confines_a_read_when_rls_is_bypassed(
    two_tenants: tuple[int, int], database: Database
) -> None:
    a, _ = two_tenants

    async def scenario() -> list[str]:
        pool = _pool(database.url)  # the owner, a superuser in tests: RLS does not apply
        try:
            return await _names(pool, a)
        finally:
            await pool.close()

    assert asyncio.run(scenario()) == ["a0", "a1"]


def test_rls_alone_confines_a_read_without_the_core_predicate(
    two_tenants: tuple[int, int], database: Database
) -> None:
    a, _ = two_tenants
    bare = TenantRead(select(USERS.c.name).order_by(USERS.c.name))  # no tenant_read()

    async def scenario() -> list[str]:
        pool = _pool(database.app_url)
        try:
            return await _names(pool, a, bare)
        finally:
            await pool.close()

    assert asyncio.run(scenario()) == ["a0", "a1"]


def test_a_read_of_a_table_without_tenant_id_is_refused() -> None:
    shared = Table("shared_things", MetaData(), Column("id", Integer))
    with pytest.raises(ValueError, match="no tenant_id"):
        tenant_read(select(USERS.c.name).join_from(USERS, shared, USERS.c.id == shared.c.id))


def test_the_tenants_statement_timeout_cancels_a_read_and_the_connection_is_dropped(
    two_tenants: tuple[int, int], database: Database
) -> None:
    a, _ = two_tenants
    slow = tenant_read(select(USERS.c.name, func.pg_sleep(1)))  # 1 s per row of the tenant

    async def scenario() -> tuple[str | None, float, list[str], tuple[Any, ...]]:
        pool = _pool(database.app_url)
        try:
            reader = TenantReader(pool, tenant_id=a, statement_timeout_ms=200)
            code, started = None, time.monotonic()
            try:
                await reader.fetch(slow)
            except psycopg.errors.QueryCanceled as exc:
                code = exc.sqlstate
            took = time.monotonic() - started
            # The pool's one connection was in a failed transaction: dropped, replaced.
            return code, took, await _names(pool, a), await _left_on_connection(pool)
        finally:
            await pool.close()

    code, took, after, left = asyncio.run(scenario())
    assert code == "57014"  # query_canceled at the tenant's 200 ms, not the role's 4 s
    assert took < 1.5
    assert after == ["a0", "a1"]
    assert left == ("", 0)


def test_a_full_pool_refuses_after_its_wait_and_serves_again_when_freed(
    database: Database,
) -> None:
    async def scenario() -> tuple[float, bool]:
        pool = _pool(database.app_url)
        try:
            async with pool.connection():
                started = time.monotonic()
                with pytest.raises(psycopg.OperationalError, match="no connection free"):
                    async with pool.connection():
                        pass
                waited = time.monotonic() - started
            async with pool.connection() as conn:
                return waited, not conn.closed
        finally:
            await pool.close()

    waited, served = asyncio.run(scenario())
    assert 0.9 < waited < 2.0
    assert served


def test_the_services_read_pool_leaves_no_prepared_statement_on_the_server(
    two_tenants: tuple[int, int], database: Database
) -> None:
    # PgBouncer in transaction mode (compose's scale profile) hands the next transaction to
    # any server connection: a statement prepared on one would be missing on the next.
    a, _ = two_tenants

    async def scenario() -> int:
        pool = create_read_pool(database.app_url, application_name="users-tests")
        pool.size = 1
        try:
            for _ in range(8):  # past psycopg's default threshold of 5 uses
                assert await _names(pool, a) == ["a0", "a1"]
            async with pool.connection() as conn:
                cursor = await conn.execute("SELECT count(*) FROM pg_prepared_statements")
                row = await cursor.fetchone()
                await conn.rollback()
            assert row is not None
            return int(row[0])
        finally:
            await pool.close()

    assert asyncio.run(scenario()) == 0


@pytest.mark.parametrize(
    ("separate", "messages_sent", "ready_states"),
    [(False, ["Query"], ["I"]), (True, ["Query", "Query"], ["T", "I"])],
)
def test_a_read_is_one_message_whose_answer_finds_the_transaction_over(
    two_tenants: tuple[int, int],
    database: Database,
    tmp_path: Path,
    separate: bool,
    messages_sent: list[str],
    ready_states: list[str],
) -> None:
    # PgBouncer in transaction mode hands a server back at the ReadyForQuery that finds the
    # transaction over ("I"). Anything the client sends after it is routed on its own: in
    # pipeline mode psycopg wrote a Flush after the Sync, and a Flush arriving late linked a
    # server to the idle client until idle_transaction_timeout, while compose's pool of 2
    # made every write wait. So a read is one Query, answered once; with the tenant set in a
    # round trip of its own (Citus), two, the first answered inside the transaction ("T").
    a, _ = two_tenants
    trace = tmp_path / "libpq.trace"

    async def scenario() -> list[str]:
        pool = _pool(database.app_url)  # one connection: the traced one serves the read
        try:
            with trace.open("w") as out:
                async with pool.connection() as conn:
                    conn.pgconn.trace(out.fileno())
                    conn.pgconn.set_trace_flags(Trace.SUPPRESS_TIMESTAMPS)
                reader = TenantReader(
                    pool, tenant_id=a, statement_timeout_ms=4000, separate=separate
                )
                names = [row["name"] for row in await reader.fetch(NAMES)]
                async with pool.connection() as conn:
                    conn.pgconn.untrace()
            return names
        finally:
            await pool.close()

    assert asyncio.run(scenario()) == ["a0", "a1"]
    messages = [line.split("\t") for line in trace.read_text().splitlines()]
    assert [m[2] for m in messages if m[0] == "F"] == messages_sent, messages
    ready = [m[3].strip() for m in messages if m[0] == "B" and m[2] == "ReadyForQuery"]
    assert ready == ready_states, messages
