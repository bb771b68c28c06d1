"""A purge deletes in primary-key ranges: bounded transactions, in key order, only its tenant.

Ranges of (tenant_id, id) rather than ctid are what a distributed PostgreSQL (Citus) can
route to the tenant's shard; this runs on plain PostgreSQL, in a database of its own
because it hangs a recording trigger on `users`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg2
import pytest

from gateway import tenantdata
from kit.servers import PgServer
from kit.stacks import Database, new_database

ROWS = 2 * tenantdata.PURGE_BATCH_ROWS + 500

# One row per DELETE statement the purge runs: its transaction, how many rows, which ids.
RECORDER = """
CREATE TABLE purge_batches (xid bigint, n int, lo bigint, hi bigint, ids bigint[]);
CREATE FUNCTION record_purge_batch() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER AS $$
BEGIN
    INSERT INTO purge_batches
    SELECT txid_current(), count(*), min(id), max(id), array_agg(id ORDER BY id) FROM gone;
    RETURN NULL;
END $$;
CREATE TRIGGER record_purge_batch AFTER DELETE ON users REFERENCING OLD TABLE AS gone
FOR EACH STATEMENT EXECUTE FUNCTION record_purge_batch();
"""


@pytest.fixture
def own_database(postgres_server: PgServer, kit_workdir: Path) -> Database:
    # The session's server goes with the session; so does this database.
    return new_database(postgres_server, log_dir=kit_workdir / "logs")


def _sql(database: Database, query: str, *args: object) -> list[tuple[Any, ...]]:
    conn = psycopg2.connect(database.url)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(query, args or None)
            return cur.fetchall() if cur.description else []
    finally:
        conn.close()


def test_a_purge_deletes_key_ranges_of_bounded_size_in_order(own_database: Database) -> None:
    db = own_database
    gone, kept = (
        int(row[0])
        for row in _sql(db, "INSERT INTO tenants (name) VALUES ('gone'), ('kept') RETURNING id")
    )
    # Stored in random order: batches taken in physical order (ctid) would not be id ranges.
    _sql(
        db,
        "INSERT INTO users (tenant_id, id, name, email) SELECT %s, n, 'u' || n, "
        "'u' || n || '@example.com' FROM generate_series(1, %s) n ORDER BY random()",
        gone,
        ROWS,
    )
    _sql(
        db,
        "INSERT INTO users (tenant_id, name) SELECT %s, 'k' || n FROM generate_series(1, 10) n",
        kept,
    )
    _sql(db, RECORDER)

    engine = tenantdata.make_app_engine(db.app_url)
    try:
        done = tenantdata.delete_rows(engine, gone)
    finally:
        engine.dispose()

    batches = _sql(db, "SELECT xid, n, lo, hi, ids FROM purge_batches ORDER BY lo")
    size = tenantdata.PURGE_BATCH_ROWS
    # One statement per transaction, each at most PURGE_BATCH_ROWS rows, consecutive ranges.
    assert len({b[0] for b in batches}) == len(batches) == 3
    assert [b[1] for b in batches] == [size, size, ROWS - 2 * size]
    assert [(b[2], b[3]) for b in batches] == [
        (1, size),
        (size + 1, 2 * size),
        (2 * size + 1, ROWS),
    ]
    assert all(list(b[4]) == list(range(b[2], b[3] + 1)) for b in batches)
    assert (done.rows, done.transactions) == (ROWS, 3)
    left = _sql(db, "SELECT tenant_id, count(*) FROM users GROUP BY tenant_id")
    assert left == [(kept, 10)]
