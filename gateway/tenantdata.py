"""One tenant's rows in every tenant table: list, count, delete in batches.

Runs as the services' role with `app.tenant_id` set, one short transaction per step: the
forced RLS policy then shows exactly that tenant's rows, all of them (RLS hides another
tenant's rows, never the named tenant's own), so no role that bypasses RLS is needed.
Every statement also names the tenant itself: were APP_DATABASE_URL ever a role that
bypasses RLS, a purge must still not reach a neighbour (the gateway refuses one at start).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, text

from services.tenancy.audit import tenant_tables
from services.tenancy.dburl import to_psycopg2

# Rows per delete transaction: short locks, bounded WAL per commit, no bloat from one huge
# transaction; a million-row tenant is a thousand small commits.
PURGE_BATCH_ROWS = 1000
# After each batch the purge rests three times as long as the batch took (pt-archiver's
# --sleep-coef): it takes at most a quarter of a database core, and the other tenants' p95
# stays within 1.2x (make load-lifecycle: 1.84x at 1.0 on a loaded 2-core machine, 0.95x
# at 3.0). A million-row purge takes about half a minute instead of ten seconds.
PURGE_PAUSE_RATIO = 3.0
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


class NoPrimaryKey(Exception):
    """A tenant table without a primary key cannot be purged in ordered, bounded batches."""


@dataclass(slots=True)
class Deletion:
    """What a purge's delete step did: rows, transactions and the longest of them."""

    rows: int = 0
    transactions: int = 0
    longest_seconds: float = 0.0


def _batch(table: Table, *, first: bool) -> tuple[str, str, str]:
    """SQL for one batch: the key of its last row; the delete of (lower, upper]; of (lower, ∞).

    `first` leaves the lower bound out. Plain comparisons on the primary key, no constant
    ORs: the index is used and, on Citus, the statements route to the tenant's shard.
    """
    if not table.key:
        raise NoPrimaryKey(f"{table.name} has no primary key (SPEC §7: (tenant_id, id))")
    key = ", ".join(quote(c) for c in table.key)
    lower = ", ".join(f":lo{i}" for i in range(len(table.key)))
    upper = ", ".join(f":hi{i}" for i in range(len(table.key)))
    where = "tenant_id = :t" + ("" if first else f" AND ({key}) > ({lower})")
    # OFFSET on the primary key index: the batch's upper bound without reading its rows;
    # it starts after the rows already deleted, so no batch walks over their dead tuples.
    last = (
        f"SELECT {key} FROM {table.name} WHERE {where} "
        f"ORDER BY {key} OFFSET {PURGE_BATCH_ROWS - 1} LIMIT 1"
    )
    bounded = f"DELETE FROM {table.name} WHERE {where} AND ({key}) <= ({upper})"
    rest = f"DELETE FROM {table.name} WHERE {where}"
    return last, bounded, rest


def delete_rows(engine: Engine, tenant_id: int, progress: Progress | None = None) -> Deletion:
    """Delete every row of the tenant, table by table, in primary-key ranges.

    Each transaction deletes one range (tenant_id, key) in (last batch's end, this one's]
    of at most PURGE_BATCH_ROWS rows, in key order. No ctid: on Citus the statements carry
    the distribution column and a key range, so each goes to the tenant's one shard.
    """
    with engine.connect() as conn:
        with conn.begin():
            order = list(reversed(tables(conn)))
        done = Deletion()
        for table in order:
            deleted = _delete_table(conn, table, tenant_id, done, progress)
            if progress:
                progress(
                    f"{table.name}: {deleted} rows deleted; longest transaction "
                    f"{done.longest_seconds:.3f} s"
                )
    return done


def _delete_table(
    conn: Connection, table: Table, tenant_id: int, done: Deletion, progress: Progress | None
) -> int:
    statements = {first: [text(q) for q in _batch(table, first=first)] for first in (True, False)}
    lower: dict[str, Any] = {}
    deleted = 0
    while True:
        last, bounded, rest = statements[not lower]
        started = time.monotonic()
        with conn.begin():
            enter_tenant(conn, tenant_id)
            end = conn.execute(last, {"t": tenant_id, **lower}).first()
            if end is None:  # under PURGE_BATCH_ROWS left: the open-ended last range
                n = conn.execute(rest, {"t": tenant_id, **lower}).rowcount
            else:
                upper = {f"hi{i}": v for i, v in enumerate(end)}
                n = conn.execute(bounded, {"t": tenant_id, **lower, **upper}).rowcount
        took = time.monotonic() - started
        done.transactions += 1
        done.longest_seconds = max(done.longest_seconds, took)
        deleted += n
        if end is None:
            break
        time.sleep(took * PURGE_PAUSE_RATIO)
        lower = {f"lo{i}": v for i, v in enumerate(end)}
        if progress and deleted % (PURGE_BATCH_ROWS * 50) == 0:
            progress(f"{table.name}: {deleted} rows deleted")
    done.rows += deleted
    return deleted
