"""The tenant-scoped session: two walls around every query a service sends.

1. PostgreSQL: each transaction starts with `SET LOCAL app.tenant_id = '<id>'`, which the RLS
   policies read. It is prepended to the transaction's first statement, so setting the tenant
   costs no extra round trip, and it ends with the transaction, so a pooled connection never
   carries one request's tenant into the next. The tenant's `statement_timeout` travels in
   the same message, so one tenant's slow query is cancelled at its own limit.
2. The ORM: every select, update and delete of a `TenantScoped` model gets the criterion
   `tenant_id = <id>`, and new rows get the tenant's id, so forgetting a filter is harmless.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, event
from sqlalchemy.engine import Connection
from sqlalchemy.orm import ORMExecuteState, Session, with_loader_criteria

from services.tenancy.models import TenantScoped

TENANT_KEY = "tenant_id"
STATEMENT_TIMEOUT_KEY = "statement_timeout_ms"
# On the pooled connection's info: the tenant to set before the transaction's first statement.
_PENDING_KEY = "tenancy.pending_tenant"


class CrossTenantWrite(Exception):
    """A row of another tenant was about to be written through a tenant session."""


def tenant_setting_sql(tenant_id: int, *, statement_timeout_ms: int | None = None) -> str:
    """The statement(s) that set the tenant (and its statement timeout) for this transaction."""
    # int() again: the values are spliced into SQL text (SET takes no bind parameters).
    setting = f"SET LOCAL app.tenant_id = '{int(tenant_id)}'"
    if statement_timeout_ms is None:
        return setting
    return f"{setting}; SET LOCAL statement_timeout = {int(statement_timeout_ms)}"


def _session_tenant(session: Session) -> int:
    tenant_id = session.info.get(TENANT_KEY)
    if not isinstance(tenant_id, int) or isinstance(tenant_id, bool) or tenant_id <= 0:
        # Fail closed: a session that lost its tenant must not run unfiltered queries.
        raise RuntimeError("tenant session without a valid tenant id")
    return tenant_id


def _session_setting_sql(session: Session) -> str:
    timeout = session.info.get(STATEMENT_TIMEOUT_KEY)
    return tenant_setting_sql(_session_tenant(session), statement_timeout_ms=timeout)


# --- wall 1: PostgreSQL sees the tenant -------------------------------------------------


def _schedule_tenant_setting(session: Session, _transaction: Any, connection: Connection) -> None:
    connection.info[_PENDING_KEY] = _session_setting_sql(session)


def _prepend_tenant_setting(
    conn: Connection,
    cursor: Any,
    statement: str,
    parameters: Any,
    _context: Any,
    executemany: bool,
) -> tuple[str, Any]:
    setting = conn.info.pop(_PENDING_KEY, None)
    if setting is None:
        return statement, parameters
    if executemany:
        # executemany repeats its statement per row; set the tenant once, on its own.
        cursor.execute(setting)
        return statement, parameters
    # One round trip: psycopg2 sends both statements in one simple-protocol message and
    # returns the last one's result.
    return f"{setting};\n{statement}", parameters


def _forget_pending(conn: Connection, *_args: Any) -> None:
    # A transaction that ended before running any statement must not leave its tenant behind.
    # A connection that died has no info to reach (touching it raises while the rollback of
    # its dead transaction is under way); its record is cleared at checkin anyway.
    if conn.invalidated:
        return
    conn.info.pop(_PENDING_KEY, None)


def _forget_pending_on_checkin(_dbapi_connection: Any, record: Any) -> None:
    # The mark lives on the pooled connection's record; whatever happened, it stays behind.
    record.info.pop(_PENDING_KEY, None)


def install_engine_hooks(engine: Engine) -> None:
    """Let tenant sessions on `engine` set their tenant inside their first statement."""
    event.listen(engine, "before_cursor_execute", _prepend_tenant_setting, retval=True)
    event.listen(engine, "commit", _forget_pending)
    event.listen(engine, "rollback", _forget_pending)
    event.listen(engine.pool, "checkin", _forget_pending_on_checkin)


def install_tenant_setting(session_cls: type[Session]) -> None:
    """Make every transaction of `session_cls` run with its tenant set in PostgreSQL."""
    event.listen(session_cls, "after_begin", _schedule_tenant_setting)


def _set_tenant_in_own_round_trip(
    session: Session, _transaction: Any, connection: Connection
) -> None:
    connection.exec_driver_sql(_session_setting_sql(session))


def install_tenant_setting_separately(session_cls: type[Session]) -> None:
    """A `SET LOCAL` round trip of its own per transaction: the form Citus needs."""
    event.listen(session_cls, "after_begin", _set_tenant_in_own_round_trip)


# --- wall 2: the ORM filters and stamps ---------------------------------------------------


def _add_tenant_criteria(state: ORMExecuteState) -> None:
    if not (state.is_select or state.is_update or state.is_delete):
        return
    tenant_id = _session_tenant(state.session)
    state.statement = state.statement.options(
        with_loader_criteria(
            TenantScoped,
            lambda cls: cls.tenant_id == tenant_id,
            include_aliases=True,
        )
    )


def _stamp_new_rows(session: Session, _flush_context: Any, _instances: Any) -> None:
    tenant_id = _session_tenant(session)
    for obj in session.new:
        if not isinstance(obj, TenantScoped):
            continue
        if obj.tenant_id is None:
            obj.tenant_id = tenant_id
        elif obj.tenant_id != tenant_id:
            raise CrossTenantWrite(f"new {type(obj).__name__} names tenant {obj.tenant_id}")
    for obj in session.dirty:
        if isinstance(obj, TenantScoped) and obj.tenant_id != tenant_id:
            raise CrossTenantWrite(f"{type(obj).__name__} moved to tenant {obj.tenant_id}")


def install_orm_wall(session_cls: type[Session]) -> None:
    """Filter every ORM statement of `session_cls` by its tenant; stamp new rows with it."""
    event.listen(session_cls, "do_orm_execute", _add_tenant_criteria)
    event.listen(session_cls, "before_flush", _stamp_new_rows)


class TenantSession(Session):
    """A session bound to one tenant (in `info["tenant_id"]`), behind both walls."""


class SeparateSettingTenantSession(Session):
    """The same walls; the tenant is set in its own round trip (Citus, `TENANT_SETTING`)."""


# Siblings, not parent and child: a subclass would inherit the fused form's listener too.
install_tenant_setting(TenantSession)
install_orm_wall(TenantSession)
install_tenant_setting_separately(SeparateSettingTenantSession)
install_orm_wall(SeparateSettingTenantSession)


def open_tenant_session(
    engine: Engine,
    *,
    tenant_id: int,
    separate: bool = False,
    statement_timeout_ms: int | None = None,
) -> TenantSession | SeparateSettingTenantSession:
    """A tenant session for `tenant_id` on an engine prepared by `install_engine_hooks`.

    With `statement_timeout_ms`, each of its transactions runs under that statement timeout.
    """
    session: TenantSession | SeparateSettingTenantSession
    if separate:
        session = SeparateSettingTenantSession(bind=engine, expire_on_commit=False)
    else:
        session = TenantSession(bind=engine, expire_on_commit=False)
    session.info[TENANT_KEY] = tenant_id
    if statement_timeout_ms is not None:
        if isinstance(statement_timeout_ms, bool) or int(statement_timeout_ms) < 1:
            raise ValueError("statement_timeout_ms must be a positive number of milliseconds")
        session.info[STATEMENT_TIMEOUT_KEY] = int(statement_timeout_ms)
    _session_tenant(session)
    return session
