"""The tenant's statement timeout rides with its tenant setting, and ends with its transaction."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, event, text
from sqlalchemy.exc import OperationalError

from kit.testing import Database
from services.tenancy.app import create_tenant_app
from services.tenancy.context import signed_context, tenant_statement_timeout
from services.tenancy.errors import STATEMENT_TIMEOUT
from services.tenancy.runtime import STATEMENT_TIMEOUT_MS
from services.tenancy.session import open_tenant_session
from services.tenancy.signing import TenantContext
from services.users.tests.holding_service import Settings as HoldingSettings
from services.users.tests.holding_service import router as holding_router


def test_timeout_is_sent_with_the_tenant_in_the_first_statement(
    app_engine: Engine, make_tenant: Callable[[], int]
) -> None:
    tenant = make_tenant()
    sent: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        sent.append(statement)

    event.listen(app_engine, "before_cursor_execute", record)
    try:
        with (
            open_tenant_session(app_engine, tenant_id=tenant, statement_timeout_ms=300) as session,
            session.begin(),
        ):
            shown = session.execute(text("SHOW statement_timeout")).scalar_one()
    finally:
        event.remove(app_engine, "before_cursor_execute", record)
    assert shown == "300ms"
    # One message: both settings, then the query (no round trip of their own).
    assert sent == [
        f"SET LOCAL app.tenant_id = '{tenant}'; SET LOCAL statement_timeout = 300;\n"
        "SHOW statement_timeout"
    ]


def test_a_statement_over_the_tenant_timeout_is_cancelled_and_the_next_one_is_not_bound(
    app_engine: Engine, make_tenant: Callable[[], int]
) -> None:
    tenant = make_tenant()
    with (
        pytest.raises(OperationalError, match="statement timeout"),
        open_tenant_session(app_engine, tenant_id=tenant, statement_timeout_ms=200) as session,
        session.begin(),
    ):
        session.execute(text("SELECT pg_sleep(2)"))
    # SET LOCAL ended with that transaction: the pooled connection is back to the role's
    # default for whichever tenant comes next.
    with open_tenant_session(app_engine, tenant_id=tenant) as session, session.begin():
        shown = session.execute(text("SHOW statement_timeout")).scalar_one()
    assert shown == f"{STATEMENT_TIMEOUT_MS // 1000}s"


@pytest.mark.parametrize("bad", [0, -5, True])
def test_a_nonsense_timeout_is_refused_before_any_sql(app_engine: Engine, bad: Any) -> None:
    with pytest.raises(ValueError, match="statement_timeout_ms"):
        open_tenant_session(app_engine, tenant_id=1, statement_timeout_ms=bad)


def test_the_tenants_signed_timeout_wins_over_the_services_default(
    database: Database, make_tenant: Callable[[], int]
) -> None:
    # The gateway's signature itself is tested elsewhere; here the verified context is given
    # as verify_headers() returns it, extra field included.
    settings = HoldingSettings.load(
        {
            "APP_DATABASE_URL": database.app_url,
            "INTERNAL_SIGNING_SECRET": "statement-timeout-tests-0123456789",
            "TENANT_STATEMENT_TIMEOUT_MS": "10000",
        }
    )
    app = create_tenant_app(settings, title="holding", routers=[holding_router])
    tenant = make_tenant()
    contexts = {
        "own": TenantContext(tenant, "r1", extra={"statement_timeout_ms": "200"}),
        "default": TenantContext(tenant, "r2"),
    }

    async def ask() -> dict[str, httpx.Response]:
        # The app in process, its lifespan (engine, audit) run as a server would run it.
        async with app.router.lifespan_context(app) as state:

            async def with_state(scope: Any, receive: Any, send: Any) -> None:
                await app({**scope, "state": dict(state or {})}, receive, send)

            transport = httpx.ASGITransport(app=with_state)
            async with httpx.AsyncClient(transport=transport, base_url="http://holding") as client:
                answers = {}
                for name, context in contexts.items():
                    app.dependency_overrides[signed_context] = lambda context=context: context
                    answers[name] = await client.get("/hold?ms=1000")
                return answers

    answers = asyncio.run(ask())
    assert answers["own"].status_code == 503
    assert answers["own"].json() == {"detail": STATEMENT_TIMEOUT}
    assert answers["default"].status_code == 200


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({"statement_timeout_ms": "250"}, 250),
        ({}, None),
        ({"statement_timeout_ms": "0"}, None),
        ({"statement_timeout_ms": "1e3"}, None),
    ],
)
def test_only_a_positive_whole_number_is_taken_as_the_tenants_timeout(
    extra: dict[str, str], expected: int | None
) -> None:
    assert tenant_statement_timeout(TenantContext(1, "r", extra=extra)) == expected
    assert (
        tenant_statement_timeout(TenantContext(1, "r", extra={"statement_timeout_ms": "1e3"}))
        is None
    )
