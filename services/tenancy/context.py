"""The FastAPI side of the signed tenant context: no valid signature, no tenant, no data."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated, Concatenate, ParamSpec, TypeVar

import anyio
from fastapi import Depends, HTTPException, Request, status
from sqlalchemy.orm import Session

from services.tenancy.asyncread import TenantReader
from services.tenancy.errors import PLACEMENT_CHANGED, PLACEMENT_CHANGED_HEADER
from services.tenancy.fencing import StalePlacement, UnknownPlacement, placement_of
from services.tenancy.replay import ReplayStoreDown
from services.tenancy.runtime import Tenancy
from services.tenancy.settings import MAX_STATEMENT_TIMEOUT_MS
from services.tenancy.signing import (
    SignatureError,
    TenantContext,
    parse_headers,
    request_target,
    verify_mac,
)

# The gateway never forwards more; a direct caller cannot make a service hold more either.
MAX_BODY_BYTES = 1024 * 1024
_REFUSED = "missing or invalid tenant context"


def tenancy(request: Request) -> Tenancy:
    """The tenancy runtime that the service's lifespan put into the request state."""
    return request.state.tenancy  # type: ignore[no-any-return]


async def _bounded_body(request: Request) -> bytes:
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise SignatureError("body larger than the gateway ever forwards")
        chunks.append(chunk)
    body = b"".join(chunks)
    # Later readers (the route's body parser) get the same bytes without reading again.
    request._body = body
    return body


async def _verify(request: Request, runtime: Tenancy) -> TenantContext:
    # Headers first: a request without a plausible, fresh context costs no body read.
    parsed = parse_headers(request.headers.getlist)
    body = await _bounded_body(request)
    context = verify_mac(
        runtime.signing_key,
        parsed,
        method=request.method,
        target=request_target(request.scope["raw_path"], request.scope["query_string"]),
        destination=runtime.destination,
        body=body,
    )
    # Only a genuine signature reaches the store: forgeries cannot fill it.
    if not await runtime.nonces.first_use(context.nonce):
        raise SignatureError("nonce already used (replay)")
    return context


# `async def`: the HMAC and the one Redis round trip run on the event loop, no worker-thread
# hop (issue 10's profile).
async def signed_context(request: Request) -> TenantContext:
    """Verify the gateway's signature over this exact request, once; 401 when it does not hold."""
    runtime = tenancy(request)
    try:
        context = await _verify(request, runtime)
    except SignatureError as exc:
        # The reason stays in the log: telling a caller which check failed helps only a forger.
        runtime.log.info("refused unsigned request: %s", exc)
        raise HTTPException(status_code=status.HTTP_401_UNAUTHORIZED, detail=_REFUSED) from None
    except ReplayStoreDown as exc:
        runtime.log.warning("refused request: %s", exc)
        raise HTTPException(
            status_code=status.HTTP_503_SERVICE_UNAVAILABLE, detail="replay store unavailable"
        ) from None
    # For the per-tenant metrics and the request's log line: ids the gateway vouched for.
    request.state.tenant_id = context.tenant_id
    request.state.request_id = context.request_id
    _fence(runtime, context)
    return context


def _fence(runtime: Tenancy, context: TenantContext) -> None:
    """503 for a context from before the tenant's last move, or for a placement not known here.

    503, not 409: the client did nothing wrong; a gateway replica is a moment behind (it is
    being invalidated), and a retry after Retry-After reaches the tenant's new placement.
    """
    try:
        placement = placement_of(context)
        runtime.engine_for(placement.name)
        runtime.fence.admit(context.tenant_id, placement.epoch)
    except (StalePlacement, UnknownPlacement) as exc:
        stale = isinstance(exc, StalePlacement)
        runtime.log.warning("refused a %s placement: %s", "stale" if stale else "unknown", exc)
        raise HTTPException(
            status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
            detail=PLACEMENT_CHANGED if stale else "placement not configured",
            headers={"Retry-After": "1", **({PLACEMENT_CHANGED_HEADER: "1"} if stale else {})},
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


P = ParamSpec("P")
R = TypeVar("R")


async def read_as_tenant(
    request: Request,
    context: TenantContext,
    read: Callable[Concatenate[TenantReader, P], Awaitable[R]],
    *args: P.args,
    **kwargs: P.kwargs,
) -> R:
    """`await read(reader, ...)` as the signed tenant, on the event loop.

    For the hot routes that only read: `reader.fetch()` runs a `tenant_read()` (the tenant
    predicate on every table) with the tenant set local to its transaction, in one round
    trip on the placement's psycopg 3 pool (services/tenancy/asyncread.py): no worker-thread
    hop (the users service's largest single cost in issue 10's profile), no generator
    dependency. The tenant's share of the pool is held throughout, as `SessionDep` holds
    it, and the read runs shielded to its end, so a cancelled request still gives its
    connection back settled.
    """
    runtime = tenancy(request)
    reader = runtime.reader(
        context.tenant_id,
        statement_timeout_ms=tenant_statement_timeout(context),
        placement=placement_of(context).name,
    )
    async with runtime.shares.slot(context.tenant_id):
        with anyio.CancelScope(shield=True):
            result = await read(reader, *args, **kwargs)
    return result


def _end(session: Session, *, commit: bool) -> None:
    with session:  # closing returns the connection; any open transaction is rolled back
        if commit:
            session.commit()


async def tenant_session(request: Request, context: TenantDep) -> AsyncIterator[Session]:
    """One transaction per request, as the signed tenant; committed before the response."""
    runtime = tenancy(request)
    # The tenant's share of the pool (fairshare.py) is held while its session is open;
    # waiting for it is a coroutine, never a worker thread.
    async with runtime.shares.slot(context.tenant_id):
        # Opening a session does no I/O (it begins on its first query), so only its end, the
        # COMMIT round trip, goes to a worker thread: one thread hop instead of two. The end
        # runs shielded and outside the thread limiter, as FastAPI's own sync generators do:
        # a cancelled request still gives its connection back, never waiting for a thread.
        session = runtime.session(
            context.tenant_id,
            statement_timeout_ms=tenant_statement_timeout(context),
            placement=placement_of(context).name,
        )
        try:
            yield session
        except BaseException:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(
                    lambda: _end(session, commit=False), limiter=anyio.CapacityLimiter(1)
                )
            raise
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(
                lambda: _end(session, commit=True), limiter=anyio.CapacityLimiter(1)
            )


# scope="function": the commit runs before the response is sent, so a failed commit is the
# client's error answer rather than a 201 for data that is not there.
SessionDep = Annotated[Session, Depends(tenant_session, scope="function")]
