"""Rows and bytes each top-K tenant keeps in each tenant table (SPEC §10), as gauges.

Counted on scrape, at most once per `REFRESH_SECONDS` (a cached answer otherwise), never on a
request: one `count(*)` and `sum(pg_column_size(row))` per top-K tenant per tenant table.
Each tenant is counted inside its own transaction with `SET LOCAL app.tenant_id`, so forced
RLS shows the services' role exactly that tenant's rows: no BYPASSRLS, no definer function.
Tenants outside the top K are not counted (that would be a scan per tenant).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import SQLAlchemyError

from services.tenancy.session import tenant_setting_sql
from services.tenancy.topk import TopTenants

log = logging.getLogger("tenancy.tablecost")

REFRESH_SECONDS = 60.0
# The audit's tenant relations (a tenant_id column), narrowed to tables the role can read.
_TENANT_TABLES = text(
    """
    SELECT format('%I.%I', n.nspname, c.relname)
    FROM pg_class c
    JOIN pg_namespace n ON n.oid = c.relnamespace
    JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'tenant_id' AND NOT a.attisdropped
    WHERE c.relkind IN ('r', 'p')
      AND n.nspname NOT IN ('pg_catalog', 'information_schema')
      AND n.nspname NOT LIKE 'pg_toast%'
      AND has_table_privilege(c.oid, 'SELECT')
    ORDER BY 1
    """
)

# table -> (rows, bytes)
TableSizes = dict[str, tuple[int, int]]


def tenant_tables(conn: Connection) -> list[str]:
    """The tenant tables the connected role can read, quoted for SQL."""
    return [row[0] for row in conn.execute(_TENANT_TABLES)]


def measure_tenant(engine: Engine, tenant_id: int, tables: list[str]) -> TableSizes:
    """Rows and bytes of one tenant in each table, as its own RLS lets the role see them."""
    sizes: TableSizes = {}
    with engine.connect() as conn, conn.begin():
        conn.exec_driver_sql(tenant_setting_sql(tenant_id))
        for table in tables:
            # `table` comes from pg_class through format('%I'), never from a request.
            found = conn.exec_driver_sql(
                f"SELECT count(*), coalesce(sum(pg_column_size(t.*)), 0) FROM {table} AS t"
            ).one()
            sizes[table] = (int(found[0]), int(found[1]))
    return sizes


class TableCost(Collector):
    """Gauges `<prefix>_tenant_table_rows` / `_bytes` by tenant and table, cached."""

    def __init__(
        self,
        prefix: str,
        engine: Engine,
        top: TopTenants,
        *,
        refresh_seconds: float = REFRESH_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.prefix = prefix
        self.engine = engine
        self.top = top
        self.refresh_seconds = refresh_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._measured_at: float | None = None
        self._sizes: dict[str, TableSizes] = {}

    def sizes(self) -> dict[str, TableSizes]:
        """Per tenant label, per table: (rows, bytes); recounted when older than the refresh."""
        with self._lock:  # one recount at a time; concurrent scrapes get its answer
            now = self._clock()
            if self._measured_at is None or now - self._measured_at >= self.refresh_seconds:
                self._sizes = self._measure()
                self._measured_at = now
            return self._sizes

    def _measure(self) -> dict[str, TableSizes]:
        self.top.refresh_if_due()
        tenants = [t for t in self.top.top if t.isdigit()]
        if not tenants:
            return {}
        try:
            with self.engine.connect() as conn:
                tables = tenant_tables(conn)
            return {t: measure_tenant(self.engine, int(t), tables) for t in tenants}
        except SQLAlchemyError as exc:
            # A scrape must still answer when PostgreSQL is down: keep the last numbers.
            log.warning("tablecost: could not count tenant rows: %s", exc.__class__.__name__)
            return self._sizes

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """The exposition."""
        rows = GaugeMetricFamily(
            f"{self.prefix}_tenant_table_rows",
            "Rows a top-K tenant keeps in a tenant table (recounted at most once a minute)",
            labels=["tenant", "table"],
        )
        size = GaugeMetricFamily(
            f"{self.prefix}_tenant_table_bytes",
            "Bytes (pg_column_size of its rows) a top-K tenant keeps in a tenant table",
            labels=["tenant", "table"],
        )
        for tenant, tables in self.sizes().items():
            for table, (count, total) in tables.items():
                rows.add_metric([tenant, table], count)
                size.add_metric([tenant, table], total)
        yield rows
        yield size
