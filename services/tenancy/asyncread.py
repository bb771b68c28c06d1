"""The hot reads on the event loop: psycopg 3, one round trip, no worker thread, no ORM.

A read used to hop to a worker thread for psycopg2 and run through the ORM (the hop alone
was the users service's largest single cost in issue 10's profile). Here a read is a Core
`select` compiled once, and one transaction is one round trip: BEGIN, the tenant's
`SET LOCAL app.tenant_id` and `statement_timeout`, the query and COMMIT go out together as
one simple Query message. Both walls stay: RLS sees the tenant set local to the
transaction (nothing is left on the pooled connection after COMMIT, and a failed read's
connection is dropped), and `tenant_read()` adds the tenant predicate to every table of the
statement, the Core form of the ORM's criterion, so a route cannot forget it. psycopg2 stays
the driver of writes, migrations and tools.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from psycopg import AsyncClientCursor
from psycopg.rows import dict_row
from sqlalchemy import Select, bindparam
from sqlalchemy.dialects.postgresql import psycopg as pg_dialect
from sqlalchemy.sql.util import find_tables

from services.tenancy.readpool import ReadPool

TENANT_PARAM = "tenancy_tenant_id"
# Called once per read with (tenant, seconds, rows): the per-tenant database cost.
CostHook = Callable[[int, float, int], None]


@dataclass(slots=True)
class TenantRead:
    """A select of tenant tables, confined to the session tenant, compiled on first use."""

    statement: Select[Any]
    _sql: str | None = None
    _defaults: dict[str, Any] = field(default_factory=dict)

    def compiled(self) -> tuple[str, dict[str, Any]]:
        """The SQL with `%(name)s` placeholders, and the values the statement itself holds."""
        if self._sql is None:
            compiled = self.statement.compile(dialect=pg_dialect.dialect())
            # Only values the statement holds (a literal limit...): a parameter left unbound
            # by the caller is an error at execution, never a silent NULL.
            self._defaults = {
                k: v for k, v in compiled.params.items() if k != TENANT_PARAM and v is not None
            }
            self._sql = str(compiled)
        return self._sql, self._defaults


def tenant_read(statement: Select[Any]) -> TenantRead:
    """`statement` with `tenant_id = <the read's tenant>` on every table it reads.

    A table without a `tenant_id` column is refused: a hot read only reads tenant data.
    """
    confined = statement
    for table in find_tables(statement, include_joins=False, include_aliases=True):
        column = table.c.get("tenant_id")
        if column is None:
            raise ValueError(f"{table} has no tenant_id: not a tenant read")
        confined = confined.where(column == bindparam(TENANT_PARAM))
    return TenantRead(confined)


@dataclass(slots=True)
class TenantReader:
    """Reads as one tenant on one placement's pool, each in a transaction of its own."""

    pool: ReadPool
    tenant_id: int
    statement_timeout_ms: int
    separate: bool = False  # the tenant set in its own round trip first (Citus)
    on_cost: CostHook | None = None
    tracer: Any = None  # an OpenTelemetry tracer when traces are exported

    async def fetch(self, read: TenantRead, **params: Any) -> list[dict[str, Any]]:
        """The rows of `read` (dicts by column name) as this tenant, committed."""
        if self.tracer is None:
            return await self._fetch(read, params)
        sql, _ = read.compiled()
        with self.tracer.start_as_current_span(
            sql.split(None, 1)[0], kind=_client_kind(), attributes={"db.system": "postgresql"}
        ) as span:
            span.set_attribute("db.statement", sql)
            return await self._fetch(read, params)

    async def _fetch(self, read: TenantRead, params: dict[str, Any]) -> list[dict[str, Any]]:
        sql, defaults = read.compiled()
        values = {**defaults, **params, TENANT_PARAM: self.tenant_id}
        # int(): spliced into SQL text (SET takes no bind parameters), as session.py does.
        begin = (
            f"BEGIN; SET LOCAL app.tenant_id = '{int(self.tenant_id)}'; "
            f"SET LOCAL statement_timeout = {int(self.statement_timeout_ms)}"
        )
        started = time.perf_counter()
        async with self.pool.connection() as conn:  # autocommit: BEGIN and COMMIT are ours
            cursor = AsyncClientCursor(conn, row_factory=dict_row)
            # The values are bound here, by psycopg's quoting (the parse of the constant SQL
            # is cached), so the whole transaction is one simple Query message: one request,
            # one ReadyForQuery, which is all PgBouncer's transaction pooling follows. In
            # pipeline mode psycopg ends with a Sync and then a Flush written on their own; a
            # Flush reaching PgBouncer after it had handed the server back linked a server to
            # the idle client, and with compose's pool of 2 every write then waited for
            # idle_transaction_timeout (the scale profile, on a loaded machine).
            select = cursor.mogrify(sql, values)
            if self.separate:
                # Citus: the tenant is set in a round trip of its own, before the query.
                await cursor.execute(begin)
                await cursor.execute(f"{select}; COMMIT")
            else:
                await cursor.execute(f"{begin}; {select}; COMMIT")
            while cursor.description is None and cursor.nextset():
                pass  # to the SELECT's result: BEGIN's and SET's carry no rows
            rows = await cursor.fetchall()
        if self.on_cost is not None:
            self.on_cost(self.tenant_id, time.perf_counter() - started, len(rows))
        return rows


def _client_kind() -> Any:
    from opentelemetry.trace import SpanKind

    return SpanKind.CLIENT
