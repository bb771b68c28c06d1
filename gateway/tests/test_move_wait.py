"""The move's wait for older transactions, against real PostgreSQL: it must wait for a writer
whose statement began before the mark even when that writer has no transaction id yet."""

from __future__ import annotations

import threading

import psycopg2

from gateway import movedata
from gateway.tenantdata import make_app_engine
from kit.stacks import Database


def test_the_wait_outlasts_an_open_transaction_that_has_no_xid_yet(database: Database) -> None:
    engine = make_app_engine(database.app_url)
    writer = psycopg2.connect(database.app_url)
    try:
        with writer.cursor() as cur:
            # A transaction that has read (its snapshot predates the mark) but not written:
            # it holds a virtual transaction id and no xid.
            cur.execute("SELECT 1")
            cur.execute("SELECT pg_current_xact_id_if_assigned()")
            assert cur.fetchone() == (None,)
        done = threading.Event()

        def wait() -> None:
            movedata.wait_out_older_transactions(engine)
            done.set()

        waiter = threading.Thread(target=wait)
        waiter.start()
        assert not done.wait(1.0), "returned while an older transaction was still open"
        writer.commit()
        assert done.wait(10), "still waiting after the older transaction ended"
        waiter.join()
    finally:
        writer.close()
        engine.dispose()
