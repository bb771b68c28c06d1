"""The admin API's lifecycle rows (SPEC §4): delete, purge, restore, certificate, export, import."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import anyio
from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from gateway import archive, invalidation, lifecycle, placedlife, purger, store
from gateway.admin import TenantId, _call, _change, require_admin
from gateway.errors import DependencyDown, GatewayError
from gateway.placements import UnknownPlacement
from gateway.schemas import PlacementName, TenantCreated, TenantOut
from gateway.state import GatewayState, StateDep
from services.tenancy.placements import SHARED

T = TypeVar("T")
router = APIRouter(prefix="/admin", dependencies=[Depends(require_admin)])
# An archive is spooled to disk before it is checked; this bounds the disk it may take.
MAX_IMPORT_BYTES = 1024 * 1024 * 1024
CHUNK_BYTES = 1024 * 1024


def _life(state: GatewayState) -> purger.Lifecycle:
    if state.lifecycle is None or not state.lifecycle.available:
        raise GatewayError(503, "tenant lifecycle unavailable: APP_DATABASE_URL is not set")
    return state.lifecycle


async def _work(fn: Callable[[], T]) -> T:
    """Long lifecycle work in a thread (no 3 s deadline), its errors mapped to HTTP."""
    try:
        return await anyio.to_thread.run_sync(fn)
    except store.TenantNotFound as exc:
        raise GatewayError(404, "tenant not found") from exc
    except lifecycle.NotPendingDeletion as exc:
        raise GatewayError(409, "tenant is not pending deletion (or its purge has begun)") from exc
    except lifecycle.PurgeRunning as exc:
        raise GatewayError(409, "a purge of this tenant is running") from exc
    except archive.BadArchive as exc:
        raise GatewayError(422, str(exc)) from exc
    except store.DuplicateTenant as exc:
        raise GatewayError(409, str(exc)) from exc
    except placedlife.MoveInProgress as exc:
        raise GatewayError(409, placedlife.MOVING) from exc
    except placedlife.PlacementUnavailable as exc:
        raise GatewayError(503, f"placement {exc} is not configured in this gateway") from exc
    except SQLAlchemyError as exc:
        raise DependencyDown("PostgreSQL") from exc


@router.delete("/tenants/{tenant_id}", status_code=204)
async def delete_tenant(
    tenant_id: TenantId, state: StateDep, purge: Annotated[bool, Query()] = False
) -> Response:
    """Refuse the tenant everywhere within 1 s; keep its data for the grace, or purge now."""
    life = _life(state) if purge else None
    if life is not None:  # refused before anything changes; the purge checks again, locked
        await _work(lambda: placedlife.refuse_if_moving(state.engine, tenant_id))
    await _change(
        state,
        lifecycle.request_deletion,
        state.engine,
        tenant_id,
        plan=purger.refusal_plan,
        tenant_id=tenant_id,
    )
    if life is not None:
        await _work_async(purger.purge_now(life, state.invalidator, tenant_id))
    return Response(status_code=204)


async def _work_async(coro: Any) -> Any:
    try:
        return await coro
    except lifecycle.PurgeRunning as exc:
        raise GatewayError(409, "a purge of this tenant is running") from exc
    except lifecycle.NotPendingDeletion as exc:
        raise GatewayError(409, "tenant was restored before its purge began") from exc
    except store.TenantNotFound as exc:
        raise GatewayError(404, "tenant not found") from exc
    except placedlife.MoveInProgress as exc:
        raise GatewayError(409, placedlife.MOVING) from exc
    except placedlife.PlacementUnavailable as exc:
        raise GatewayError(503, f"placement {exc} is not configured in this gateway") from exc
    except (SQLAlchemyError, lifecycle.PurgeIncomplete) as exc:
        raise DependencyDown("PostgreSQL") from exc


@router.post("/tenants/{tenant_id}/restore")
async def restore_tenant(tenant_id: TenantId, state: StateDep) -> TenantOut:
    """Back to active with its rows and keys; 409 unless pending deletion."""
    try:
        tenant = await _change(
            state,
            lifecycle.restore,
            state.engine,
            tenant_id,
            plan=lambda t: invalidation.plan(tenant_id=t.id, slug=t.slug),
            tenant_id=tenant_id,
        )
    except lifecycle.NotPendingDeletion as exc:
        raise GatewayError(409, "tenant is not pending deletion (or its purge has begun)") from exc
    return TenantOut.of(tenant)


@router.get("/tenants/{tenant_id}/deletion-certificate")
async def deletion_certificate(tenant_id: TenantId, state: StateDep) -> JSONResponse:
    """The signed record of the tenant's purge; 404 before it is purged."""
    cert = await _call(lifecycle.certificate, state.engine, tenant_id)
    if cert is None:
        raise GatewayError(404, "no deletion certificate: the tenant has not been purged")
    return JSONResponse(cert)


def _revision(engine: Any) -> str | None:
    with engine.connect() as conn:
        return conn.execute(text("SELECT version_num FROM alembic_version LIMIT 1")).scalar()


# The archive is gzip, not JSON: say so, or clients (and the fuzzer) expect JSON.
_ARCHIVE = {"schema": {"type": "string", "format": "binary"}}
# An altered archive is refused with one sentence; a bad query parameter with FastAPI's list.
_IMPORT_REFUSED = {
    "description": "The archive is not readable, or its hashes do not match its manifest",
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "required": ["detail"],
                "properties": {"detail": {"anyOf": [{"type": "string"}, {"type": "array"}]}},
            }
        }
    },
}


@router.get(
    "/tenants/{tenant_id}/export",
    response_class=StreamingResponse,
    responses={200: {"description": "A gzip tar", "content": {"application/gzip": _ARCHIVE}}},
)
async def export_tenant(tenant_id: TenantId, state: StateDep) -> StreamingResponse:
    """The tenant's data as a gzip tar, from one consistent snapshot."""
    life = _life(state)
    tenant = await _call(store.get_tenant, state.engine, tenant_id)
    workdir = Path(tempfile.mkdtemp(prefix="tk-export-"))
    try:
        revision = await _call(_revision, state.engine)
        path = await _work(
            lambda: placedlife.export(life.engine, life.app_engines, tenant, revision, workdir)
        )
    except BaseException:
        shutil.rmtree(workdir, ignore_errors=True)
        raise
    return StreamingResponse(
        _stream(path, workdir),
        media_type="application/gzip",
        headers={"Content-Disposition": f'attachment; filename="tenant-{tenant.id}.tar.gz"'},
    )


def _unknown_query_placement(name: str, known: list[str]) -> RequestValidationError:
    """The 422 for ?placement= naming no configured placement, shaped like any other."""
    msg = f"unknown placement {name!r} (known: {', '.join(known)})"
    return RequestValidationError(
        [{"type": "value_error", "loc": ("query", "placement"), "msg": msg, "input": name}]
    )


async def _stream(path: Path, workdir: Path) -> AsyncIterator[bytes]:
    try:
        async with await anyio.open_file(path, "rb") as handle:
            while chunk := await handle.read(CHUNK_BYTES):
                yield chunk
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


@router.post(
    "/tenants/import",
    status_code=201,
    responses={422: _IMPORT_REFUSED},
    # Documented as octet-stream (what generic clients can send); the bytes are a gzip tar.
    openapi_extra={
        "requestBody": {"required": True, "content": {"application/octet-stream": _ARCHIVE}}
    },
)
async def import_tenant(
    request: Request,
    state: StateDep,
    name: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
    slug: Annotated[str | None, Query(min_length=1, max_length=63)] = None,
    placement: Annotated[PlacementName, Query()] = SHARED,
) -> TenantCreated:
    """A new tenant (new id, new first key) holding an archive's rows, in `placement`
    (default shared); 422 if the archive was altered or the placement is unknown."""
    life = _life(state)
    try:
        state.placements.check(placement)
    except UnknownPlacement:
        raise _unknown_query_placement(placement, state.placements.names) from None
    workdir = Path(tempfile.mkdtemp(prefix="tk-import-"))
    try:
        upload = workdir / "upload.tar.gz"
        size = 0
        async with await anyio.open_file(upload, "wb") as sink:
            async for chunk in request.stream():
                size += len(chunk)
                if size > MAX_IMPORT_BYTES:
                    raise GatewayError(413, "archive larger than 1 GiB")
                await sink.write(chunk)
        tenant, key, clear = await _work(
            lambda: archive.import_tenant(
                life.engine,
                life.require_app_engine(placement),
                upload,
                workdir,
                name=name,
                slug=slug,
                placement=placement,
                placements=life.placements,
            )
        )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    await state.invalidator.publish(*invalidation.plan(tenant_id=tenant.id, slug=tenant.slug))
    return TenantCreated(**TenantOut.of(tenant).model_dump(), api_key=clear, api_key_id=key.id)
