"""Database cost per tenant: every statement of a tenant session timed and its rows counted.

Measured with SQLAlchemy's cursor events around each statement, not with SQL comments
(those defeat statement caches and do not split `pg_stat_statements`). Each request's own
total goes back to the gateway in one response header, so its usage answer (SPEC §4) can
report database seconds and rows without the services writing anywhere.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import Engine, event
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.tenancy.session import TENANT_KEY, TenantSession
from services.tenancy.tenantmetrics import TenantSeries
from services.tenancy.topk import TopTenants

# "<seconds> <rows>": read and removed by the gateway, never seen by clients.
COST_HEADER = "x-tenantkit-db-cost"
_TENANT_ON_CONNECTION = "tenancy.cost_tenant"
_STARTED = "tenancy.cost_started"


@dataclass(slots=True)
class RequestCost:
    """What one request spent in PostgreSQL."""

    seconds: float = 0.0
    rows: int = 0


# Set per request by `ReportCost`; worker threads see it because anyio copies the context.
_current: ContextVar[RequestCost | None] = ContextVar("tenancy_request_cost", default=None)


class DbStats(Collector):
    """Database seconds, statements and rows per tenant (top K, rest "other")."""

    def __init__(self, prefix: str, top: TopTenants | None) -> None:
        self.prefix = prefix
        self.series = TenantSeries(top, width=3)

    def add(self, tenant: int | None, *, seconds: float, rows: int) -> None:
        """Count one statement."""
        key = (self.series.label(None if tenant is None else str(tenant)),)
        row = self.series.add(key, 0, seconds)
        row[1] += 1
        row[2] += rows

    def collect(self) -> Iterator[CounterMetricFamily]:
        """The exposition."""
        names = (
            ("db_seconds", "Seconds spent in PostgreSQL statements"),
            ("db_statements", "Statements sent to PostgreSQL"),
            ("db_rows", "Rows returned or written"),
        )
        families = [
            CounterMetricFamily(f"{self.prefix}_{n}", h, labels=["tenant"]) for n, h in names
        ]
        for key, row in self.series.snapshot():
            for family, value in zip(families, row, strict=True):
                family.add_metric(list(key), value)
        yield from families


def _note_tenant(session: Session, _transaction: Any, connection: Connection) -> None:
    connection.info[_TENANT_ON_CONNECTION] = session.info.get(TENANT_KEY)


def _forget_tenant(conn: Connection, *_args: Any) -> None:
    if not conn.invalidated:
        conn.info.pop(_TENANT_ON_CONNECTION, None)


def install_cost_hooks(engine: Engine, stats: DbStats) -> None:
    """Time every statement on `engine` and charge it to the session's tenant."""
    if not event.contains(TenantSession, "after_begin", _note_tenant):
        event.listen(TenantSession, "after_begin", _note_tenant)

    def started(conn: Connection, *_args: Any) -> None:
        conn.info[_STARTED] = time.perf_counter()

    def finished(conn: Connection, cursor: Any, *_args: Any) -> None:
        seconds = time.perf_counter() - conn.info.pop(_STARTED, time.perf_counter())
        tenant = conn.info.get(_TENANT_ON_CONNECTION)
        charge(stats, tenant, seconds=seconds, rows=max(cursor.rowcount, 0))

    event.listen(engine, "before_cursor_execute", started)
    event.listen(engine, "after_cursor_execute", finished)
    event.listen(engine, "commit", _forget_tenant)
    event.listen(engine, "rollback", _forget_tenant)


def charge(stats: DbStats, tenant: int | None, *, seconds: float, rows: int) -> None:
    """Count database time and rows for `tenant` and for the request under way."""
    stats.add(tenant, seconds=seconds, rows=rows)
    cost = _current.get()
    if cost is not None:
        cost.seconds += seconds
        cost.rows += rows


class ReportCost:
    """ASGI middleware: collect the request's database cost and send it in `COST_HEADER`."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        cost = RequestCost()
        token = _current.set(cost)

        async def reporting_send(message: Message) -> None:
            # The session commits before the answer starts (SessionDep), so the cost is whole.
            if message["type"] == "http.response.start" and (cost.seconds or cost.rows):
                value = f"{cost.seconds:.6f} {cost.rows}".encode()
                message = {
                    **message,
                    "headers": [*message.get("headers", []), (COST_HEADER.encode(), value)],
                }
            await send(message)

        try:
            await self.app(scope, receive, reporting_send)
        finally:
            _current.reset(token)
