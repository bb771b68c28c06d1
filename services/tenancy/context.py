"""The FastAPI side of the signed tenant context: no valid signature, no tenant, no data."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from sqlalchemy.orm import Session

from services.tenancy.runtime import Tenancy
from services.tenancy.settings import MAX_STATEMENT_TIMEOUT_MS
from services.tenancy.signing import SignatureError, TenantContext, request_target, verify_headers


def tenancy(request: Request) -> Tenancy:
    """The tenancy runtime that the service's lifespan put into the request state."""
    return request.state.tenancy  # type: ignore[no-any-return]


def signed_context(request: Request) -> TenantContext:
    """Verify the gateway's signature over this exact request; 401 when it does not hold."""
    runtime = tenancy(request)
    try:
        return verify_headers(
            runtime.signing_secret,
            getlist=request.headers.getlist,
            method=request.method,
            target=request_target(request.scope["raw_path"], request.scope["query_string"]),
        )
    except SignatureError as exc:
        # The reason stays in the log: telling a caller which check failed helps only a forger.
        runtime.log.info("refused unsigned request: %s", exc)
        raise HTTPException(
            status_code=status.HTTP_401_UNAUTHORIZED, detail="missing or invalid tenant context"
        ) from None


TenantDep = Annotated[TenantContext, Depends(signed_context)]

# The signed field that carries a tenant's own statement timeout (the tenants row's
# statement_timeout_ms); absent, the service's TENANT_STATEMENT_TIMEOUT_MS applies.
STATEMENT_TIMEOUT_FIELD = "statement_timeout_ms"


def tenant_statement_timeout(context: TenantContext) -> int | None:
    """The tenant's own statement timeout in ms when the gateway signed a valid one."""
    raw = context.extra.get(STATEMENT_TIMEOUT_FIELD, "")
    if raw.isascii() and raw.isdigit() and 0 < int(raw) <= MAX_STATEMENT_TIMEOUT_MS:
        return int(raw)
    return None


async def tenant_share(request: Request, context: TenantDep) -> AsyncIterator[None]:
    """Hold one of the tenant's slots of the pool (fairshare.py) while its session is open."""
    # Async on purpose: a request waiting for its tenant's slot must not hold a worker thread.
    async with tenancy(request).shares.slot(context.tenant_id):
        yield


def tenant_session(
    request: Request,
    context: TenantDep,
    _share: Annotated[None, Depends(tenant_share, scope="function")],
) -> Iterator[Session]:
    """One transaction per request, as the signed tenant; committed before the response."""
    session = tenancy(request).session(
        context.tenant_id, statement_timeout_ms=tenant_statement_timeout(context)
    )
    with session, session.begin():
        yield session


# scope="function": the commit runs before the response is sent, so a failed commit is the
# client's error answer rather than a 201 for data that is not there.
SessionDep = Annotated[Session, Depends(tenant_session, scope="function")]
