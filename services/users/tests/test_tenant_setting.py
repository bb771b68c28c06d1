"""TENANT_SETTING: fused on plain PostgreSQL, its own round trip on Citus, chosen at start."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import psycopg2
import pytest
from sqlalchemy import Engine, create_engine, event, pool, select

from kit.servers import PgServer
from services.tenancy.dburl import to_psycopg2
from services.tenancy.session import open_tenant_session
from services.tenancy.tenant_setting import choose_tenant_setting
from services.users.models import User
from services.users.tests.conftest import SignedClient


@pytest.fixture
def citus_lookalike(postgres_server: PgServer) -> Iterator[Engine]:
    """A database whose catalog lists a `citus` extension (a row in pg_extension, no Citus).

    Detection reads pg_extension; this database answers it as a Citus database would, so the
    detection's query runs for real without Citus being installed.
    """
    url = postgres_server.create_database("tk_citus_lookalike")
    conn = psycopg2.connect(url)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("DELETE FROM pg_extension WHERE extname = 'citus'")
        cur.execute(
            "INSERT INTO pg_extension (oid, extname, extowner, extnamespace, extrelocatable,"
            " extversion) SELECT 990001, 'citus', 10, oid, false, '13.2-1'"
            " FROM pg_namespace WHERE nspname = 'pg_catalog'"
        )
    conn.close()
    engine = create_engine(to_psycopg2(url), poolclass=pool.NullPool)
    yield engine
    engine.dispose()


def test_auto_fuses_the_setting_on_plain_postgresql(app_engine: Engine) -> None:
    choice = choose_tenant_setting(app_engine, "auto")
    assert (choice.citus, choice.form) == (False, "fused")


def test_auto_sets_the_tenant_separately_where_citus_is_installed(
    citus_lookalike: Engine,
) -> None:
    choice = choose_tenant_setting(citus_lookalike, "auto")
    assert (choice.citus, choice.form) == (True, "separate")
    assert choice.describe() == "separate (TENANT_SETTING=auto, Citus detected)"


def test_an_explicit_mode_wins_over_detection(app_engine: Engine, citus_lookalike: Engine) -> None:
    assert choose_tenant_setting(app_engine, "separate").form == "separate"
    assert choose_tenant_setting(citus_lookalike, "fused").form == "fused"


def _statements_of_one_transaction(engine: Engine, tenant_id: int, *, separate: bool) -> list[str]:
    sent: list[str] = []

    def record(_conn, _cursor, statement, _params, _context, _many) -> None:  # type: ignore[no-untyped-def]
        sent.append(statement)

    event.listen(engine, "after_cursor_execute", record)
    try:
        session = open_tenant_session(engine, tenant_id=tenant_id, separate=separate)
        with session, session.begin():
            rows = session.scalars(select(User)).all()
    finally:
        event.remove(engine, "after_cursor_execute", record)
    # The RLS wall saw the tenant either way: every row read is the tenant's own.
    assert {user.tenant_id for user in rows} <= {tenant_id}
    return sent


def test_separate_form_sets_the_tenant_in_its_own_round_trip(
    app_engine: Engine, make_tenant: Callable[[], int]
) -> None:
    tenant = make_tenant()
    separate = _statements_of_one_transaction(app_engine, tenant, separate=True)
    assert separate[0] == f"SET LOCAL app.tenant_id = '{tenant}'"
    assert len(separate) == 2 and "SET LOCAL" not in separate[1]
    fused = _statements_of_one_transaction(app_engine, tenant, separate=False)
    assert len(fused) == 1 and fused[0].startswith(f"SET LOCAL app.tenant_id = '{tenant}';")


def test_separate_form_keeps_tenants_apart_through_the_service(
    start_service: Callable[..., Any], secrets: Any, make_tenant: Callable[[], int]
) -> None:
    service = start_service("users", {"TENANT_SETTING": "separate"})
    with httpx.Client(base_url=service.url, timeout=10) as http:
        api = SignedClient(http, secrets.signing_secret)
        ready = http.get("/readyz").json()
        assert ready["tenant_setting"] == {"mode": "separate", "citus": False, "form": "separate"}
        a, b = make_tenant(), make_tenant()
        made = api.request("POST", "/users", a, json={"name": "Ann", "email": "ann@a.example"})
        assert made.status_code == 201, made.text
        user_id = made.json()["id"]
        assert api.request("GET", f"/users/{user_id}", a).status_code == 200
        assert api.request("GET", f"/users/{user_id}", b).status_code == 404
        assert api.request("GET", "/users", b).json() == []
    assert "tenant setting: separate (TENANT_SETTING=separate, no Citus)" in service.tail(200)


def test_readyz_shows_the_choice_made_at_start(users_http: httpx.Client) -> None:
    ready = users_http.get("/readyz").json()
    assert ready["tenant_setting"] == {"mode": "auto", "citus": False, "form": "fused"}
