"""The hot reads on the event loop: SQLAlchemy's asyncio layer over psycopg 3, no worker thread.

A read used to hop to a worker thread for psycopg2 (the users service's largest single cost
in issue 10's profile). Here the same `TenantSession` runs inside SQLAlchemy's greenlet
bridge, so everything that guards a session holds unchanged: the ORM criteria, the tenant
and statement timeout fused into the first statement as `SET LOCAL` (or set in their own
round trip where Citus needs it), the per-statement cost and trace hooks. psycopg2 stays
the driver of writes, migrations and tools.
"""

from __future__ import annotations

from typing import Any

import psycopg
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine

from services.tenancy.session import (
    SeparateSettingTenantSession,
    TenantSession,
    bind_tenant,
    install_engine_hooks,
)


class LastResultCursor(psycopg.AsyncClientCursor):  # type: ignore[type-arg]
    """Client-side binding and the last statement's result, as psycopg2 answers.

    The fused `SET LOCAL ...; SELECT ...` is one simple-protocol message (server-side binding
    refuses two statements); psycopg 3 stops at the first result (the SET's), psycopg2 and
    SQLAlchemy expect the last one (the SELECT's rows).
    """

    async def execute(self, query: Any, params: Any = None, **kwargs: Any) -> Any:
        await super().execute(query, params, **kwargs)
        while self.nextset():
            pass
        return self


def create_read_engine(
    url: URL,
    *,
    pool_size: int,
    pool_timeout: float,
    connect_timeout: int,
    statement_timeout_ms: int,
) -> AsyncEngine:
    """An asyncio psycopg 3 engine for `url` (a psycopg2 URL of the services' role)."""
    engine = create_async_engine(
        url.set(drivername="postgresql+psycopg"),
        pool_pre_ping=False,  # as the write engine: see services.tenancy.runtime
        pool_size=pool_size,
        max_overflow=0,
        pool_timeout=pool_timeout,
        connect_args={
            "connect_timeout": connect_timeout,
            "options": f"-c statement_timeout={statement_timeout_ms}",
            "cursor_factory": LastResultCursor,
        },
    )
    install_engine_hooks(engine.sync_engine)
    return engine


def open_read_session(
    engine: AsyncEngine,
    *,
    tenant_id: int,
    separate: bool = False,
    statement_timeout_ms: int | None = None,
) -> AsyncSession:
    """An AsyncSession whose sync session is a tenant session for `tenant_id` (both walls)."""
    session_class = SeparateSettingTenantSession if separate else TenantSession
    session = AsyncSession(engine, sync_session_class=session_class, expire_on_commit=False)
    bind_tenant(
        session.sync_session, tenant_id=tenant_id, statement_timeout_ms=statement_timeout_ms
    )
    return session
