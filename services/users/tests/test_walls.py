"""Each wall on its own, against the real database: PostgreSQL RLS, then the ORM criterion."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import psycopg2
import psycopg2.errors
import psycopg2.extensions
import pytest
from sqlalchemy import Engine, delete, event, func, select, text, update
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from kit.testing import Database
from services.tenancy.dburl import plain
from services.tenancy.runtime import create_tenant_engine
from services.tenancy.session import (
    CrossTenantWrite,
    install_tenant_setting,
    open_tenant_session,
)
from services.users.models import User
from services.users.tests.conftest import owner_rows


@pytest.fixture
def two_tenants(
    owner: psycopg2.extensions.connection, make_tenant: Callable[[], int]
) -> tuple[int, int]:
    """Tenants A and B with two users each, written by the owner (not through any wall)."""
    a, b = make_tenant(), make_tenant()
    for tenant in (a, b):
        for n in range(2):
            owner_rows(
                owner,
                "INSERT INTO users (tenant_id, name, email) VALUES (%s, %s, %s)",
                tenant,
                f"user {n} of {tenant}",
                f"u{n}@t{tenant}.example",
            )
    return a, b


@pytest.fixture
def app_conn(database: Database) -> Iterator[psycopg2.extensions.connection]:
    """A raw psycopg2 connection as the services' role: no ORM, no hooks."""
    conn = psycopg2.connect(database.app_url)
    yield conn
    conn.close()


def _count(conn: psycopg2.extensions.connection, sql: str = "SELECT count(*) FROM users") -> int:
    with conn.cursor() as cur:
        cur.execute(sql)
        row = cur.fetchone()
        assert row is not None
        return int(row[0])


def test_service_role_without_tenant_sees_no_rows(
    two_tenants: tuple[int, int], app_conn: psycopg2.extensions.connection
) -> None:
    assert _count(app_conn) == 0


def test_service_role_without_tenant_cannot_insert(
    two_tenants: tuple[int, int], app_conn: psycopg2.extensions.connection
) -> None:
    a, _ = two_tenants
    with pytest.raises(psycopg2.errors.InsufficientPrivilege), app_conn.cursor() as cur:
        cur.execute("INSERT INTO users (tenant_id, name) VALUES (%s, 'intruder')", (a,))


def test_raw_sql_with_tenant_set_sees_only_that_tenant(
    two_tenants: tuple[int, int],
    app_conn: psycopg2.extensions.connection,
    owner: psycopg2.extensions.connection,
) -> None:
    a, b = two_tenants
    with app_conn.cursor() as cur:
        cur.execute(f"SET LOCAL app.tenant_id = '{a}'")
        cur.execute("SELECT DISTINCT tenant_id FROM users")
        assert cur.fetchall() == [(a,)]
        cur.execute("SELECT count(*) FROM users")
        assert cur.fetchone() == (2,)
        # Writing another tenant's row is refused by the policy's WITH CHECK.
        with pytest.raises(psycopg2.errors.InsufficientPrivilege):
            cur.execute("INSERT INTO users (tenant_id, name) VALUES (%s, 'smuggled')", (b,))
    app_conn.rollback()
    with app_conn.cursor() as cur:
        cur.execute(f"SET LOCAL app.tenant_id = '{a}'")
        # Updates and deletes cannot reach B's rows either.
        cur.execute("UPDATE users SET name = 'overwritten' WHERE tenant_id = %s", (b,))
        assert cur.rowcount == 0
        cur.execute("DELETE FROM users WHERE tenant_id = %s", (b,))
        assert cur.rowcount == 0
    app_conn.commit()
    assert owner_rows(owner, "SELECT count(*) FROM users WHERE tenant_id = %s", b) == [(2,)]


def test_tenant_setting_ends_with_its_transaction_on_a_reused_connection(
    two_tenants: tuple[int, int], app_conn: psycopg2.extensions.connection
) -> None:
    a, _ = two_tenants
    with app_conn.cursor() as cur:
        cur.execute(f"SET LOCAL app.tenant_id = '{a}'")
        assert _count(app_conn) == 2
    app_conn.commit()
    with app_conn.cursor() as cur:
        # After a SET LOCAL the setting reads '' (not NULL) on this connection: the policy's
        # nullif() turns it into "no tenant" instead of a cast error or another tenant's rows.
        cur.execute("SELECT current_setting('app.tenant_id', true)")
        assert cur.fetchone() == ("",)
    assert _count(app_conn) == 0


def test_pooled_connection_does_not_carry_a_tenant_into_the_next_checkout(
    two_tenants: tuple[int, int], database: Database
) -> None:
    a, _ = two_tenants
    engine = create_tenant_engine(database.app_url, application_name="users-tests")
    try:
        with open_tenant_session(engine, tenant_id=a) as session, session.begin():
            assert session.scalar(select(func.count()).select_from(User)) == 2
            used = session.connection().connection.dbapi_connection
        with engine.connect() as conn:
            # The very same PostgreSQL connection, now without any tenant.
            assert conn.connection.dbapi_connection is used
            assert conn.execute(text("SELECT count(*) FROM users")).scalar_one() == 0
    finally:
        engine.dispose()


class RlsOnlySession(Session):
    """The tenant is set in PostgreSQL, but no ORM criterion is added: RLS alone."""


install_tenant_setting(RlsOnlySession)


def test_rls_alone_hides_other_tenants_when_orm_criterion_is_off(
    two_tenants: tuple[int, int], app_engine: Engine
) -> None:
    a, b = two_tenants
    session = RlsOnlySession(bind=app_engine)
    session.info["tenant_id"] = a
    with session, session.begin():
        rows = session.scalars(select(User)).all()
        assert {u.tenant_id for u in rows} == {a} and len(rows) == 2
        assert session.scalars(select(User).where(User.tenant_id == b)).all() == []
        # Ids are per tenant: B has a user 1 too, and asking for id 1 finds A's alone.
        assert [u.name for u in session.scalars(select(User).where(User.id == 1))] == [
            f"user 0 of {a}"
        ]
        changed = session.execute(update(User).where(User.tenant_id == b).values(name="x"))
        assert changed.rowcount == 0  # type: ignore[attr-defined]


@pytest.fixture
def bypass_engine(owner: psycopg2.extensions.connection, database: Database) -> Iterator[Engine]:
    """A test-only role with BYPASSRLS: PostgreSQL's wall is off for it."""
    with owner.cursor() as cur:
        cur.execute("SELECT 1 FROM pg_roles WHERE rolname = 'tk_test_bypass'")
        if cur.fetchone() is None:
            cur.execute("CREATE ROLE tk_test_bypass LOGIN BYPASSRLS PASSWORD 'bypass'")
        cur.execute("GRANT SELECT, INSERT, UPDATE, DELETE ON users TO tk_test_bypass")
    url = make_url(database.url).set(username="tk_test_bypass", password="bypass")
    engine = create_tenant_engine(plain(url), application_name="users-tests")
    yield engine
    engine.dispose()


def test_orm_alone_hides_other_tenants_when_rls_is_bypassed(
    two_tenants: tuple[int, int], bypass_engine: Engine
) -> None:
    a, b = two_tenants
    with bypass_engine.connect() as conn:
        # The wall under test is really the only one: this role sees every tenant's rows.
        seen = conn.execute(
            text("SELECT count(*) FROM users WHERE tenant_id IN (:a, :b)"), {"a": a, "b": b}
        )
        assert seen.scalar_one() == 4
    with open_tenant_session(bypass_engine, tenant_id=a) as session, session.begin():
        rows = session.scalars(select(User)).all()
        assert {u.tenant_id for u in rows} == {a} and len(rows) == 2
        assert session.scalars(select(User).where(User.tenant_id == b)).all() == []
        # B has a user 1 too, which this role could see: the ORM criterion keeps it out.
        assert [u.name for u in session.scalars(select(User).where(User.id == 1))] == [
            f"user 0 of {a}"
        ]
        renamed = session.execute(update(User).values(name="renamed by a"))
        assert renamed.rowcount == 2  # type: ignore[attr-defined]
        added = User(name="new in a")
        session.add(added)
        session.flush()
        assert added.id == 3  # A's own numbering, whatever B holds
    with bypass_engine.connect() as conn:
        names = conn.execute(
            text("SELECT tenant_id, name FROM users WHERE tenant_id IN (:a, :b) ORDER BY id"),
            {"a": a, "b": b},
        ).all()
    assert sorted(n for t, n in names if t == b) == [f"user 0 of {b}", f"user 1 of {b}"]
    assert sorted(n for t, n in names if t == a) == ["new in a", "renamed by a", "renamed by a"]


def test_orm_alone_confines_bulk_update_and_delete_when_rls_is_bypassed(
    two_tenants: tuple[int, int], bypass_engine: Engine
) -> None:
    a, b = two_tenants
    with open_tenant_session(bypass_engine, tenant_id=a) as session, session.begin():
        # Aimed at B outright: the tenant criterion is ANDed in, so nothing matches.
        aimed = session.execute(update(User).where(User.tenant_id == b).values(name="hijacked"))
        assert aimed.rowcount == 0  # type: ignore[attr-defined]
        gone = session.execute(delete(User).where(User.tenant_id == b))
        assert gone.rowcount == 0  # type: ignore[attr-defined]
        # Unqualified: only A's own rows.
        everything = session.execute(delete(User))
        assert everything.rowcount == 2  # type: ignore[attr-defined]
    with bypass_engine.connect() as conn:
        left = conn.execute(
            text("SELECT tenant_id, name FROM users WHERE tenant_id IN (:a, :b) ORDER BY id"),
            {"a": a, "b": b},
        ).all()
    assert sorted(left) == [(b, f"user 0 of {b}"), (b, f"user 1 of {b}")]


def test_orm_refuses_a_new_row_naming_another_tenant(
    two_tenants: tuple[int, int], app_engine: Engine
) -> None:
    a, b = two_tenants
    with (
        pytest.raises(CrossTenantWrite),
        open_tenant_session(app_engine, tenant_id=a) as session,
        session.begin(),
    ):
        session.add(User(name="smuggled", tenant_id=b))
        session.flush()


def test_tenant_is_set_in_the_same_statement_as_the_first_query(
    two_tenants: tuple[int, int], app_engine: Engine
) -> None:
    a, _ = two_tenants
    sent: list[str] = []

    def record(_conn, _cursor, statement, _params, _context, _many) -> None:  # type: ignore[no-untyped-def]
        sent.append(statement)

    event.listen(app_engine, "after_cursor_execute", record)
    try:
        with open_tenant_session(app_engine, tenant_id=a) as session, session.begin():
            session.scalars(select(User)).all()
            session.scalars(select(User).where(User.id == 0)).all()
    finally:
        event.remove(app_engine, "after_cursor_execute", record)
    assert len(sent) == 2
    assert sent[0].startswith(f"SET LOCAL app.tenant_id = '{a}';")
    assert "SET LOCAL" not in sent[1]


def test_transaction_ended_before_any_statement_leaves_no_tenant_behind(
    two_tenants: tuple[int, int], database: Database
) -> None:
    a, _ = two_tenants
    engine = create_tenant_engine(database.app_url, application_name="users-tests")
    try:
        # Begun (the tenant is scheduled for the first statement) but never used.
        with open_tenant_session(engine, tenant_id=a) as session, session.begin():
            session.connection()
        with engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM users")).scalar_one() == 0
    finally:
        engine.dispose()
