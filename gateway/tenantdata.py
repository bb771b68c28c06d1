"""One tenant's rows in every tenant table: list, count, delete in batches.

Runs as the services' role with `app.tenant_id` set, one short transaction per step: the
forced RLS policy then shows exactly that tenant's rows, all of them (RLS hides another
tenant's rows, never the named tenant's own), so no role that bypasses RLS is needed.
Every statement also names the tenant itself: were APP_DATABASE_URL ever a role that
bypasses RLS, a purge must still not reach a neighbour (the gateway refuses one at start).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Connection, Engine, create_engine, text

from services.tenancy.audit import tenant_tables
from services.tenancy.dburl import to_psycopg2

# Rows per delete transaction: short locks, bounded WAL per commit, no bloat from one huge
# transaction; a million-row tenant is a thousand small commits.
PURGE_BATCH_ROWS = 1000
Progress = Callable[[str], None]

# Foreign keys between tenant tables: a referencing table is emptied before what it names.
_REFERENCES = text(
    """
    SELECT format('%I.%I', sn.nspname, s.relname) AS child,
           format('%I.%I', tn.nspname, t.relname) AS parent
    FROM pg_constraint c
    JOIN pg_class s ON s.oid = c.conrelid JOIN pg_namespace sn ON sn.oid = s.relnamespace
    JOIN pg_class t ON t.oid = c.confrelid JOIN pg_namespace tn ON tn.oid = t.relnamespace
    WHERE c.contype = 'f'
    """
)
# Stored columns only (a generated column is recomputed on import), tenant_id left out: the
# archive is the tenant's data, not its place in this database.
_COLUMNS = text(
    """
    SELECT a.attname FROM pg_attribute a
    WHERE a.attrelid = CAST(:table AS regclass) AND a.attnum > 0 AND NOT a.attisdropped
      AND a.attgenerated = '' AND a.attname <> 'tenant_id'
    ORDER BY a.attnum
    """
)
_KEY_COLUMNS = text(
    """
    SELECT a.attname FROM pg_index i
    JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
    WHERE i.indrelid = CAST(:table AS regclass) AND i.indisprimary AND a.attname <> 'tenant_id'
    ORDER BY array_position(i.indkey, a.attnum)
    """
)


@dataclass(frozen=True, slots=True)
class Table:
    name: str
    columns: list[str]
    key: list[str]

    def order_by(self) -> str:
        """The ORDER BY that makes an export of it byte-for-byte repeatable."""
        return ", ".join(quote(c) for c in (self.key or self.columns))


def quote(identifier: str) -> str:
    """A column name as a quoted SQL identifier."""
    return '"' + identifier.replace('"', '""') + '"'


def make_app_engine(database_url: str) -> Engine:
    """A small pool for lifecycle work, as the services' role."""
    url = to_psycopg2(database_url, application_name="gateway-lifecycle")
    return create_engine(url, pool_size=2, max_overflow=2, pool_pre_ping=True)


def enter_tenant(conn: Connection, tenant_id: int) -> None:
    """Make the current transaction see (and write) only `tenant_id`'s rows."""
    conn.execute(text("SELECT set_config('app.tenant_id', :t, true)"), {"t": str(tenant_id)})


def tables(conn: Connection) -> list[Table]:
    """Every tenant table, parents before the tables that reference them."""
    names = tenant_tables(conn)
    edges = [(c, p) for c, p in conn.execute(_REFERENCES) if c in names and p in names and c != p]
    ordered: list[str] = []
    pending = sorted(names)
    while pending:
        ready = [n for n in pending if not any(c == n and p in pending for c, p in edges)]
        ready = ready or pending[:1]  # a cycle: break it anywhere, the FKs will say if wrong
        ordered.extend(ready)
        pending = [n for n in pending if n not in ready]
    return [
        Table(
            name=n,
            columns=list(conn.execute(_COLUMNS, {"table": n}).scalars()),
            key=list(conn.execute(_KEY_COLUMNS, {"table": n}).scalars()),
        )
        for n in ordered
    ]


def count_rows(engine: Engine, tenant_id: int) -> dict[str, int]:
    """The tenant's row count in every tenant table, from one snapshot."""
    with engine.connect() as conn:
        conn = conn.execution_options(isolation_level="REPEATABLE READ")
        with conn.begin():
            enter_tenant(conn, tenant_id)
            query = "SELECT count(*) FROM {} WHERE tenant_id = :t"
            return {
                t.name: int(conn.execute(text(query.format(t.name)), {"t": tenant_id}).scalar_one())
                for t in tables(conn)
            }


def delete_rows(engine: Engine, tenant_id: int, progress: Progress | None = None) -> int:
    """Delete every row of the tenant, table by table, PURGE_BATCH_ROWS per transaction."""
    with engine.connect() as conn:
        with conn.begin():
            order = [t.name for t in reversed(tables(conn))]
        total = 0
        for name in order:
            deleted = 0
            batch = text(
                f"DELETE FROM {name} WHERE ctid = ANY (ARRAY("
                f"SELECT ctid FROM {name} WHERE tenant_id = :t LIMIT {PURGE_BATCH_ROWS}))"
                " AND tenant_id = :t"
            )
            while True:
                with conn.begin():
                    enter_tenant(conn, tenant_id)
                    n = conn.execute(batch, {"t": tenant_id}).rowcount
                deleted += n
                if n and progress and deleted % (PURGE_BATCH_ROWS * 50) == 0:
                    progress(f"{name}: {deleted} rows deleted")
                if n < PURGE_BATCH_ROWS:
                    break
            if progress:
                progress(f"{name}: {deleted} rows deleted")
            total += deleted
    return total
