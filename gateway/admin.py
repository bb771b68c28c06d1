"""The admin API (SPEC §4): tenants and their API keys, behind ADMIN_TOKEN."""

from __future__ import annotations

import hmac
from collections.abc import Callable
from typing import Annotated, ParamSpec, TypeVar

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway import admin_writes, invalidation, store, usage
from gateway.breaker import RedisDown
from gateway.errors import GatewayError, error_response
from gateway.placements import UnknownPlacement, unknown_placement
from gateway.schemas import KeyCreated, TenantCreate, TenantCreated, TenantOut, TenantPatch
from gateway.state import GatewayState, StateDep

P = ParamSpec("P")
T = TypeVar("T")
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="admin"'}


def is_admin(headers: Headers, admin_token: str) -> bool:
    """Whether the request carries exactly `Authorization: Bearer <ADMIN_TOKEN>`."""
    values = headers.getlist("authorization")
    scheme, _, token = values[0].partition(" ") if len(values) == 1 else ("", "", "")
    # compare_digest: the answer's timing must not reveal how much of a guess was right.
    return scheme.lower() == "bearer" and hmac.compare_digest(
        token.strip().encode(), admin_token.encode()
    )


class AdminGate:
    """ASGI middleware: /admin without the token is 401 before anything reads the body.

    FastAPI parses a JSON body before running dependencies, so the dependency alone would
    let anyone make the gateway read (and hold) a body of any size.
    """

    def __init__(self, app: ASGIApp, *, admin_token: str) -> None:
        self.app = app
        self.admin_token = admin_token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if (
            scope["type"] == "http"
            and (path == "/admin" or path.startswith("/admin/"))
            and not is_admin(Headers(scope=scope), self.admin_token)
        ):
            response = error_response(401, "admin token required", _CHALLENGE)
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


def require_admin(request: Request, state: StateDep) -> None:
    """401 unless `Authorization: Bearer $ADMIN_TOKEN` (the gate checked it already)."""
    if not is_admin(request.headers, state.settings.ADMIN_TOKEN):
        raise GatewayError(401, "admin token required", _CHALLENGE)


router = APIRouter(prefix="/admin", dependencies=[Depends(require_admin)])
TenantId = Annotated[int, Path(gt=0, le=2**63 - 1)]
KeyId = Annotated[int, Path(gt=0, le=2**63 - 1)]


def _not_found(exc: Exception) -> GatewayError:
    what = "API key" if isinstance(exc, store.KeyNotFound) else "tenant"
    return GatewayError(404, f"{what} not found")


async def _call(fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """A store call with its domain errors mapped to HTTP."""
    try:
        return await store.run_db(fn, *args, **kwargs)
    except (store.TenantNotFound, store.KeyNotFound) as exc:
        raise _not_found(exc) from exc
    except store.DuplicateTenant as exc:
        raise GatewayError(409, str(exc)) from exc
    except store.TenantPendingDeletion as exc:
        raise GatewayError(409, "tenant is pending deletion: restore it first") from exc


async def _change(
    state: GatewayState,
    fn: Callable[..., T],
    *args: object,
    plan: Callable[[T], admin_writes.Plan],
    tenant_id: int | None = None,
    **kwargs: object,
) -> T:
    """A store change, invalidated when done, and also when it times out (it may commit)."""
    unknown = invalidation.plan(tenant_id=tenant_id) if tenant_id is not None else ([], [])
    try:
        return await admin_writes.change(
            fn, *args, invalidator=state.invalidator, plan=plan, unknown=unknown, **kwargs
        )
    except (store.TenantNotFound, store.KeyNotFound) as exc:
        raise _not_found(exc) from exc
    except store.DuplicateTenant as exc:
        raise GatewayError(409, str(exc)) from exc
    except store.TenantPendingDeletion as exc:
        raise GatewayError(409, "tenant is pending deletion: restore it first") from exc


@router.post("/tenants", status_code=201)
async def create_tenant(body: TenantCreate, state: StateDep) -> TenantCreated:
    """Create a tenant; the answer carries its first API key, shown this once."""
    try:
        place = state.placements.parent_row_adder(body.placement)
    except UnknownPlacement:
        raise unknown_placement("placement", body.placement, state.placements.names) from None
    # Someone may have asked for this id or slug before it existed: drop the "no such" entries.
    tenant, key, clear = await _change(
        state,
        store.create_tenant,
        state.engine,
        plan=lambda made: invalidation.plan(tenant_id=made[0].id, slug=made[0].slug),
        name=body.name,
        slug=body.slug,
        rate_limit_per_second=body.rate_limit_per_second,
        max_in_flight=body.max_in_flight,
        statement_timeout_ms=body.statement_timeout_ms,
        placement=body.placement,
        place=place,
    )
    return TenantCreated(**TenantOut.of(tenant).model_dump(), api_key=clear, api_key_id=key.id)


@router.get("/tenants")
async def list_tenants(state: StateDep) -> list[TenantOut]:
    """Every tenant."""
    return [TenantOut.of(t) for t in await _call(store.list_tenants, state.engine)]


@router.get("/tenants/{tenant_id}")
async def get_tenant(tenant_id: TenantId, state: StateDep) -> TenantOut:
    """One tenant, or 404."""
    return TenantOut.of(await _call(store.get_tenant, state.engine, tenant_id))


@router.patch("/tenants/{tenant_id}")
async def patch_tenant(tenant_id: TenantId, body: TenantPatch, state: StateDep) -> TenantOut:
    """Rename, suspend, reactivate, or change a limit; every replica sees it within 1 s."""
    tenant = await _change(
        state,
        store.update_tenant,
        state.engine,
        tenant_id,
        body.changes(),
        plan=lambda t: invalidation.plan(tenant_id=t.id),
        tenant_id=tenant_id,
    )
    return TenantOut.of(tenant)


@router.post("/tenants/{tenant_id}/api-keys", status_code=201)
async def create_key(tenant_id: TenantId, state: StateDep) -> KeyCreated:
    """A new key for the tenant, shown this once."""
    key, clear = await _call(store.create_key, state.engine, tenant_id)
    return KeyCreated.of(key, clear)


@router.delete("/tenants/{tenant_id}/api-keys/{key_id}", status_code=204)
async def revoke_key(tenant_id: TenantId, key_id: KeyId, state: StateDep) -> Response:
    """Revoke a key; it stops working on every replica within 1 s."""
    await _change(
        state,
        store.revoke_key,
        state.engine,
        tenant_id,
        key_id,
        plan=lambda digest: invalidation.plan(tenant_id=tenant_id, key_digests=[digest]),
        tenant_id=tenant_id,
    )
    return Response(status_code=204)


@router.get("/tenants/{tenant_id}/usage")
async def tenant_usage(
    tenant_id: TenantId,
    state: StateDep,
    window_seconds: Annotated[
        int, Query(ge=usage.BUCKET_SECONDS, le=usage.MAX_WINDOW_SECONDS)
    ] = 3600,
) -> dict[str, float | int | None]:
    """Requests (exact), errors, p95, database seconds, rows and bytes over the window."""
    await _call(store.get_tenant, state.engine, tenant_id)
    try:
        return await state.usage.read(tenant_id, window_seconds=window_seconds)
    except RedisDown as exc:
        raise GatewayError(503, "usage store (redis) unavailable") from exc
