"""The hot reads' async engine (psycopg 3, services/tenancy/asyncread.py) keeps both walls."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import psycopg2.extensions
import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from kit.testing import Database
from services.tenancy.asyncread import open_read_session
from services.tenancy.runtime import create_tenant_read_engine
from services.users.models import User
from services.users.tests.conftest import owner_rows


@pytest.fixture
def two_tenants(
    owner: psycopg2.extensions.connection, make_tenant: Callable[[], int]
) -> tuple[int, int]:
    """Tenants A (two users) and B (three), written by the owner."""
    a, b = make_tenant(), make_tenant()
    for tenant, count in ((a, 2), (b, 3)):
        for n in range(count):
            owner_rows(
                owner, "INSERT INTO users (tenant_id, name) VALUES (%s, %s)", tenant, f"u{n}"
            )
    return a, b


def _count(session: Session) -> int:
    return int(session.scalar(select(func.count()).select_from(User)) or 0)


def _raw_count(session: Session) -> int:
    # No ORM criterion here: only RLS decides what this sees.
    return int(session.execute(text("SELECT count(*) FROM users")).scalar_one())


def test_each_read_sees_its_own_tenant_and_the_connection_keeps_none(
    two_tenants: tuple[int, int], database: Database
) -> None:
    a, b = two_tenants

    async def scenario() -> tuple[list[int], Any, Any, int]:
        engine = create_tenant_read_engine(database.app_url, application_name="users-tests")
        try:
            counts = []
            for tenant in (a, b, a):
                async with open_read_session(engine, tenant_id=tenant) as session:
                    counts.append(await session.run_sync(_count))
                    counts.append(await session.run_sync(_raw_count))
                    first = (await (await session.connection()).get_raw_connection()).dbapi_connection
                    await session.commit()
            async with engine.connect() as conn:
                # The very same PostgreSQL connection, now without any tenant.
                again = (await conn.get_raw_connection()).dbapi_connection
                seen = (await conn.execute(text("SELECT count(*) FROM users"))).scalar_one()
            return counts, first, again, seen
        finally:
            await engine.dispose()

    counts, first, again, seen = asyncio.run(scenario())
    assert counts == [2, 2, 3, 3, 2, 2]
    assert again is first
    assert seen == 0


def test_the_tenants_statement_timeout_cancels_its_read_and_leaves_no_tenant(
    two_tenants: tuple[int, int], database: Database
) -> None:
    a, _ = two_tenants

    def slow(session: Session) -> Any:
        return session.execute(text("SELECT pg_sleep(2)")).all()

    async def scenario() -> tuple[str | None, float, int]:
        engine = create_tenant_read_engine(database.app_url, application_name="users-tests")
        try:
            code, started = None, time.monotonic()
            try:
                async with open_read_session(
                    engine, tenant_id=a, statement_timeout_ms=200
                ) as session:
                    await session.run_sync(slow)
            except OperationalError as exc:
                code = getattr(exc.orig, "sqlstate", None)
            took = time.monotonic() - started
            async with engine.connect() as conn:
                seen = (await conn.execute(text("SELECT count(*) FROM users"))).scalar_one()
            return code, took, seen
        finally:
            await engine.dispose()

    code, took, seen = asyncio.run(scenario())
    assert code == "57014"  # query_canceled: the tenant's 200 ms, not the role's 4 s
    assert took < 1.5
    assert seen == 0
