"""The tenant's statement timeout rides with its tenant setting, and ends with its transaction."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import Engine, event, text
from sqlalchemy.exc import OperationalError

from services.tenancy.runtime import STATEMENT_TIMEOUT_MS
from services.tenancy.session import open_tenant_session


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
