"""Database failures as HTTP answers: PostgreSQL down or too slow is a fast 503, never a hang."""

from __future__ import annotations

import logging

import psycopg
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy import exc as sa_exc

log = logging.getLogger("tenancy")

DATABASE_UNAVAILABLE = "database unavailable"
STATEMENT_TIMEOUT = "query cancelled: it ran longer than this tenant's statement timeout"
PLACEMENT_CHANGED = "tenant placement changed; retry"
# On a refusal that did nothing (no transaction committed): the gateway may send the request
# once more, to where the tenant lives now (gateway/moveretry.py). Never passed to clients.
PLACEMENT_CHANGED_HEADER = "x-tenantkit-placement-changed"
# SQLSTATE query_canceled: statement_timeout fired (the tenant's own or the role's).
_QUERY_CANCELED = "57014"
# object_not_in_prerequisite_state: a write reached a placement the tenant has moved out of
# (migrations/tenant_tables.py, tenant_move_capture); retrying reaches its new placement.
_NOT_SERVED_HERE = "55000"


async def _database_unavailable(_request: Request, error: Exception) -> JSONResponse:
    orig = getattr(error, "orig", None)
    # psycopg2 (writes) says pgcode, psycopg 3 (the async reads) sqlstate.
    code = getattr(orig, "pgcode", None) or getattr(orig, "sqlstate", None)
    if code == _NOT_SERVED_HERE:
        log.warning("refused a write: %s", str(error).splitlines()[0] if str(error) else error)
        return JSONResponse(
            {"detail": PLACEMENT_CHANGED},
            status_code=503,
            headers={"Retry-After": "1", PLACEMENT_CHANGED_HEADER: "1"},
        )
    if code == _QUERY_CANCELED:
        # Still the 503 of SPEC §5 (a query stuck behind a lock ends here too), but saying
        # why, and without Retry-After: the same request would be cancelled again.
        log.info("statement timeout: %s", str(error).splitlines()[0] if str(error) else error)
        return JSONResponse({"detail": STATEMENT_TIMEOUT}, status_code=503)
    log.warning("database unavailable: %s", str(error).splitlines()[0] if str(error) else error)
    return JSONResponse(
        {"detail": DATABASE_UNAVAILABLE}, status_code=503, headers={"Retry-After": "1"}
    )


def install_database_error_handlers(app: FastAPI) -> None:
    """Map lost connections, refused connects, timeouts and an exhausted pool to 503."""
    # OperationalError covers refused/broken connections and statement_timeout
    # (QueryCanceled); InterfaceError a connection closed under us; TimeoutError the pool.
    # psycopg 3's OperationalError includes the reads' PoolExhausted (services/tenancy/readpool.py).
    for error in (
        sa_exc.OperationalError,
        sa_exc.InterfaceError,
        sa_exc.TimeoutError,
        psycopg.OperationalError,
        psycopg.InterfaceError,
    ):
        app.add_exception_handler(error, _database_unavailable)
