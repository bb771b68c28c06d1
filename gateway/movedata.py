"""A moving tenant's rows between two placements: copy, catch up, verify, delete.

Everything here runs as the services' role with the moving tenant set (tenantdata's rule):
RLS shows and admits exactly that tenant's rows, so the mover needs no role that bypasses
RLS and cannot reach a neighbour. Writes that arrive while the copy runs are logged by the
source's `tenant_move_capture` trigger (migrations/tenant_tables.py) and replayed here by
primary key: each replay re-reads the row's current state, so order and repeats do not
matter. The mover's own writes set `app.tenant_mover`, which a frozen placement admits.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

from psycopg2.extras import execute_values
from sqlalchemy import Connection, Engine, text

from gateway.tenantdata import Table, enter_tenant, quote, tables

COPY_BATCH_ROWS = 2000
CHANGES_PER_PASS = 5000
# Other transactions a move waits out (statement_timeout 4 s and idle 5 s bound the
# services' own); beyond this the move fails and the tenant stays where it was.
OLD_TRANSACTIONS_WAIT_SECONDS = 15.0
# The move's own tables: bookkeeping, never tenant data to copy.
_NOT_DATA = {"public.tenant_move_marks", "public.tenant_move_changes"}


class MoveError(Exception):
    """The move cannot go on; the tenant stays where it was."""


def as_mover(conn: Connection, tenant_id: int) -> None:
    """This transaction acts for `tenant_id`, as the mover (admitted where it is frozen)."""
    enter_tenant(conn, tenant_id)
    conn.execute(text("SELECT set_config('app.tenant_mover', 'on', true)"))


def data_tables(engine: Engine) -> list[Table]:
    """The tenant tables to move, parents first; MoveError if one has no per-tenant id."""
    with engine.connect() as conn, conn.begin():
        found = [t for t in tables(conn) if t.name not in _NOT_DATA]
    for table in found:
        if table.key != ["id"]:
            raise MoveError(f"{table.name} has no per-tenant id key; it cannot be moved live")
    return found


def mark(engine: Engine, tenant_id: int, state: str | None, move_id: int) -> None:
    """Set the tenant's mark here: 'capturing', 'frozen' (both owned by move `move_id`), or
    None (served here normally)."""
    with engine.begin() as conn:
        enter_tenant(conn, tenant_id)
        conn.execute(text("SELECT tenant_move_mark(:s, :m)"), {"s": state, "m": move_id})


def shift(engine: Engine, tenant_id: int, move_id: int, state: str | None) -> bool:
    """Change the tenant's mark here only while it is move `move_id`'s; whether it was.

    The fence between a mover that stalled past its heartbeat and the recovery that took
    its move over: once the recovery has unmarked the source (or a newer move marked it),
    the stalled mover can no longer freeze it.
    """
    with engine.begin() as conn:
        enter_tenant(conn, tenant_id)
        return bool(
            conn.execute(
                text("SELECT tenant_move_shift(:m, :s)"), {"m": move_id, "s": state}
            ).scalar()
        )


def carry_counters(source: Engine, target: Engine, tenant_id: int) -> None:
    """Raise the target's id counters of the tenant to at least the source's, so an id
    deleted just before the move (counted, but in no row) is not handed out again."""
    with source.connect() as src, src.begin():
        enter_tenant(src, tenant_id)
        counters = src.execute(text("SELECT table_name, last_id FROM tenant_move_counters()")).all()
    with target.begin() as dst:
        as_mover(dst, tenant_id)
        for name, last_id in counters:
            dst.execute(text("SELECT tenant_move_raise_counter(:n, :v)"), {"n": name, "v": last_id})


def wait_out_older_transactions(engine: Engine) -> None:
    """Return once every transaction of this database begun before now has ended (as CREATE
    INDEX CONCURRENTLY waits): a write that missed the mark just set has then committed or not.

    By virtual transaction id, not by xid: a writer whose statement began before the mark may
    not have an xid yet (one is assigned at its first row write), so a snapshot's xmin would
    not wait for it, and its row, written with no log entry, could commit after the copy's
    snapshot. Every transaction holds its virtualxid lock from its first statement.
    """
    with engine.connect() as conn:
        older = conn.execute(_OPEN_TRANSACTIONS).scalars().all()
        conn.rollback()
        deadline = time.monotonic() + OLD_TRANSACTIONS_WAIT_SECONDS
        while older:
            older = (
                conn.execute(
                    text(
                        "SELECT virtualxid FROM pg_locks WHERE locktype = 'virtualxid' "
                        "AND virtualxid = ANY(CAST(:v AS text[]))"
                    ),
                    {"v": list(older)},
                )
                .scalars()
                .all()
            )
            conn.rollback()
            if not older:
                return
            if time.monotonic() > deadline:
                raise MoveError("older transactions did not end in time")
            time.sleep(0.01)


# The transactions open in this database now, but for the caller's own.
_OPEN_TRANSACTIONS = text(
    "SELECT l.virtualxid FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
    "WHERE l.locktype = 'virtualxid' AND l.mode = 'ExclusiveLock' AND l.granted "
    "AND a.datname = current_database() AND l.pid <> pg_backend_pid()"
)


def _insert(conn: Connection, table: Table, rows: Sequence[Sequence[Any]], tenant_id: int) -> None:
    if not rows:
        return
    columns = ", ".join(quote(c) for c in ["tenant_id", *table.columns])
    cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        execute_values(
            cursor,
            f"INSERT INTO {table.name} ({columns}) VALUES %s",
            [(tenant_id, *row) for row in rows],
            page_size=len(rows),
        )
    finally:
        cursor.close()


def _select(table: Table) -> str:
    return ", ".join(quote(c) for c in table.columns)


def clear(engine: Engine, tenant_id: int, names: Iterable[str]) -> int:
    """Delete the tenant's rows in these tables here, in batches (children first)."""
    total = 0
    for name in reversed(list(names)):
        batch = text(
            f"DELETE FROM {name} WHERE tenant_id = :t AND id IN ("
            f"SELECT id FROM {name} WHERE tenant_id = :t LIMIT {COPY_BATCH_ROWS})"
        )
        while True:
            with engine.begin() as conn:
                as_mover(conn, tenant_id)
                n = conn.execute(batch, {"t": tenant_id}).rowcount
            total += n
            if n < COPY_BATCH_ROWS:
                break
    return total


def copy(
    source: Engine, target: Engine, tenant_id: int, data: list[Table], progress: Any = None
) -> int:
    """Copy every row of the tenant, from one snapshot of the source, in batches."""
    copied = 0
    with source.connect() as src:
        src = src.execution_options(isolation_level="REPEATABLE READ", stream_results=True)
        with src.begin():
            enter_tenant(src, tenant_id)
            for table in data:
                result = src.execute(
                    text(
                        f"SELECT {_select(table)} FROM {table.name} "
                        "WHERE tenant_id = :t ORDER BY id"
                    ),
                    {"t": tenant_id},
                )
                for batch in result.partitions(COPY_BATCH_ROWS):
                    with target.begin() as dst:
                        as_mover(dst, tenant_id)
                        _insert(dst, table, [tuple(r) for r in batch], tenant_id)
                    copied += len(batch)
                    if progress is not None:
                        progress(copied)
    return copied


Taken = dict[str, set[int]]  # table (schema-qualified) -> ids of its rows that changed


def catch_up(
    source: Engine, target: Engine, tenant_id: int, data: list[Table]
) -> tuple[int, Taken]:
    """Replay one pass of logged changes (at most CHANGES_PER_PASS): how many were taken,
    and the ids they name (the verification re-checks their chunks)."""
    by_name = {t.name.removeprefix("public."): t for t in data}
    with source.connect() as src, src.begin():
        enter_tenant(src, tenant_id)
        taken = src.execute(
            text("SELECT table_name, row_id FROM tenant_move_take_changes(:n)"),
            {"n": CHANGES_PER_PASS},
        ).all()
        if not taken:
            return 0, {}
        ids: dict[str, set[int]] = defaultdict(set)
        for name, row_id in taken:
            ids[name].add(int(row_id))
        current = {}
        for name, wanted in ids.items():
            table = by_name.get(name)
            if table is None:
                raise MoveError(f"a change names table {name}, which is not moved")
            current[name] = src.execute(
                text(
                    f"SELECT {_select(table)} FROM {table.name} "
                    "WHERE tenant_id = :t AND id = ANY(:ids) ORDER BY id"
                ),
                {"t": tenant_id, "ids": sorted(wanted)},
            ).all()
        # Delete then insert, in one target transaction: also right when two rows swapped a
        # unique value. The source's transaction commits (the log entries go) only after.
        with target.begin() as dst:
            as_mover(dst, tenant_id)
            for name in reversed([t.name.removeprefix("public.") for t in data]):
                if name in ids:
                    where = "WHERE tenant_id = :t AND id = ANY(:ids)"
                    dst.execute(
                        text(f"DELETE FROM {by_name[name].name} {where}"),
                        {"t": tenant_id, "ids": sorted(ids[name])},
                    )
            for table in data:
                name = table.name.removeprefix("public.")
                if name in current:
                    _insert(dst, table, [tuple(r) for r in current[name]], tenant_id)
    return len(taken), {by_name[name].name: wanted for name, wanted in ids.items()}
