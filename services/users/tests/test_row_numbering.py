"""Ids numbered per tenant by the database: no tenant can count another's inserts."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import psycopg2
import psycopg2.errors
import psycopg2.extensions
import pytest
from sqlalchemy import Engine, event

from kit.testing import Database
from services.tenancy.session import open_tenant_session
from services.users.models import User
from services.users.tests.conftest import owner_rows

COUNTER = "SELECT last_id FROM tenant_row_ids WHERE tenant_id = %s AND table_name = 'users'"


@pytest.fixture
def app_conn(database: Database) -> Iterator[psycopg2.extensions.connection]:
    """A raw psycopg2 connection as the services' role."""
    conn = psycopg2.connect(database.app_url)
    yield conn
    conn.close()


def _insert_as(
    conn: psycopg2.extensions.connection, *, tenant: int, row_tenant: int, name: str
) -> int:
    with conn.cursor() as cur:
        cur.execute(f"SET LOCAL app.tenant_id = '{tenant}'")
        cur.execute(
            "INSERT INTO users (tenant_id, name) VALUES (%s, %s) RETURNING id", (row_tenant, name)
        )
        row = cur.fetchone()
        assert row is not None
    conn.commit()
    return int(row[0])


def test_refused_insert_for_another_tenant_leaves_its_counter_untouched(
    make_tenant: Callable[[], int],
    app_conn: psycopg2.extensions.connection,
    owner: psycopg2.extensions.connection,
) -> None:
    x, y = make_tenant(), make_tenant()
    _insert_as(app_conn, tenant=y, row_tenant=y, name="y's own")
    assert owner_rows(owner, COUNTER, y) == [(1,)]
    # As X, a row naming Y: the trigger runs first, then the policy's WITH CHECK refuses.
    with pytest.raises(psycopg2.errors.InsufficientPrivilege):
        _insert_as(app_conn, tenant=x, row_tenant=y, name="smuggled")
    app_conn.rollback()
    assert owner_rows(owner, COUNTER, y) == [(1,)]
    assert owner_rows(owner, COUNTER, x) == []
    assert _insert_as(app_conn, tenant=y, row_tenant=y, name="y's next") == 2


def test_service_role_cannot_read_or_change_the_counters(
    make_tenant: Callable[[], int], app_conn: psycopg2.extensions.connection
) -> None:
    tenant = make_tenant()
    _insert_as(app_conn, tenant=tenant, row_tenant=tenant, name="someone")
    for sql in (
        "SELECT last_id FROM tenant_row_ids",
        "UPDATE tenant_row_ids SET last_id = 0",
        f"INSERT INTO tenant_row_ids VALUES ({tenant}, 'users', 99)",
    ):
        with app_conn.cursor() as cur:
            cur.execute(f"SET LOCAL app.tenant_id = '{tenant}'")
            with pytest.raises(psycopg2.errors.InsufficientPrivilege):
                cur.execute(sql)
        app_conn.rollback()


def test_explicit_id_moves_the_counter_past_it(
    make_tenant: Callable[[], int],
    app_conn: psycopg2.extensions.connection,
    owner: psycopg2.extensions.connection,
) -> None:
    tenant = make_tenant()
    # A bulk load or a restore as the owner, with the ids it already had.
    owner_rows(owner, "INSERT INTO users (tenant_id, id, name) VALUES (%s, 40, 'loaded')", tenant)
    owner_rows(owner, "INSERT INTO users (tenant_id, id, name) VALUES (%s, 7, 'older')", tenant)
    assert owner_rows(owner, COUNTER, tenant) == [(40,)]
    assert _insert_as(app_conn, tenant=tenant, row_tenant=tenant, name="new") == 41


def test_concurrent_inserts_of_one_tenant_get_distinct_consecutive_ids(
    make_tenant: Callable[[], int], database: Database
) -> None:
    tenant, threads, each = make_tenant(), 6, 15
    ids: list[int] = []
    errors: list[BaseException] = []
    start = threading.Barrier(threads)

    def insert_many() -> None:
        conn = psycopg2.connect(database.app_url)
        try:
            start.wait()
            for n in range(each):
                ids.append(_insert_as(conn, tenant=tenant, row_tenant=tenant, name=f"c{n}"))
        except BaseException as error:  # reported below, in the test's thread
            errors.append(error)
        finally:
            conn.close()

    workers = [threading.Thread(target=insert_many) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert errors == []
    assert sorted(ids) == list(range(1, threads * each + 1))


def test_orm_insert_reads_the_id_back_in_the_same_statement(
    make_tenant: Callable[[], int], app_engine: Engine
) -> None:
    tenant = make_tenant()
    sent: list[str] = []

    def record(_conn, _cursor, statement, _params, _context, _many) -> None:  # type: ignore[no-untyped-def]
        sent.append(statement)

    event.listen(app_engine, "after_cursor_execute", record)
    try:
        with open_tenant_session(app_engine, tenant_id=tenant) as session, session.begin():
            user = User(name="returned")
            session.add(user)
            session.flush()
            assert user.id == 1
    finally:
        event.remove(app_engine, "after_cursor_execute", record)
    # One round trip: the INSERT returns the trigger's id, no SELECT follows it.
    assert len(sent) == 1, sent
    assert sent[0].lstrip().split(";")[-1].strip().startswith("INSERT INTO users")
    assert "RETURNING users.id" in sent[0]


def test_deleting_a_tenant_removes_its_counters(
    make_tenant: Callable[[], int],
    app_conn: psycopg2.extensions.connection,
    owner: psycopg2.extensions.connection,
) -> None:
    tenant = make_tenant()
    _insert_as(app_conn, tenant=tenant, row_tenant=tenant, name="gone soon")
    owner_rows(owner, "DELETE FROM tenants WHERE id = %s", tenant)
    left = "SELECT count(*) FROM tenant_row_ids WHERE tenant_id = %s"
    assert owner_rows(owner, left, tenant) == [(0,)]
