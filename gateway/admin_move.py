"""The admin API's move rows (SPEC §4, §11): start a live move, follow it."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import anyio
import anyio.from_thread
from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict

from gateway import invalidation, movedata, mover, moverecord, store
from gateway.admin import TenantId, _call, require_admin
from gateway.errors import GatewayError
from gateway.placements import UnknownPlacement, unknown_placement
from gateway.schemas import PlacementName
from gateway.state import GatewayState, StateDep

router = APIRouter(prefix="/admin", dependencies=[Depends(require_admin)])
log = logging.getLogger("gateway.move")
# Moves run as tasks of their own; a reference keeps each alive until it ends.
_running: set[asyncio.Task[Any]] = set()


class MoveBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    to: PlacementName


def signals(state: GatewayState) -> mover.Signals:
    """The mover's messages to every replica, sent from its worker thread via the event loop."""

    def announce(message: str) -> None:
        anyio.from_thread.run(state.invalidator.announce, message)

    def invalidate(tenant: store.TenantRecord) -> None:
        keys, messages = invalidation.plan(tenant_id=tenant.id, slug=tenant.slug)
        anyio.from_thread.run(state.invalidator.publish, keys, messages)

    return mover.Signals(
        hold=lambda t: announce(f"hold:{t}"),
        release=lambda t: announce(f"release:{t}"),
        invalidate=invalidate,
    )


@router.post("/tenants/{tenant_id}/move", status_code=202)
async def start_move(tenant_id: TenantId, body: MoveBody, state: StateDep) -> JSONResponse:
    """Move the tenant's rows to another placement while it keeps being served."""
    if not state.mover_engines:
        raise GatewayError(503, "moves unavailable: APP_DATABASE_URL is not set")
    owner = moverecord.new_owner()
    try:
        source, move_id = await _call(
            moverecord.begin, state.engine, state.placements, tenant_id, body.to, owner=owner
        )
    except UnknownPlacement:
        raise unknown_placement("to", body.to, state.placements.names) from None
    except moverecord.MoveRunning:
        raise GatewayError(409, "a move of this tenant is running") from None
    except movedata.MoveError as exc:
        raise GatewayError(409, str(exc)) from None
    move = mover.Move(
        directory=state.engine,
        app_engines=state.mover_engines,
        placements=state.placements,
        signals=signals(state),
        tenant_id=tenant_id,
        source=source,
        target=body.to,
        move_id=move_id,
        owner=owner,
        heartbeat_timeout_seconds=state.settings.MOVE_HEARTBEAT_TIMEOUT_SECONDS,
    )
    task = asyncio.create_task(_run(move))
    _running.add(task)
    task.add_done_callback(_running.discard)
    found = await _call(moverecord.latest, state.engine, tenant_id)
    return JSONResponse(found, status_code=202)


async def _run(move: mover.Move) -> None:
    result = await anyio.to_thread.run_sync(move.run)
    log.info("move of tenant %s: %s", move.tenant_id, result)


@router.get("/tenants/{tenant_id}/move")
async def get_move(tenant_id: TenantId, state: StateDep) -> dict[str, Any]:
    """The tenant's newest move: state, rows copied, the measured write pause; 404 if none."""
    found = await _call(moverecord.latest, state.engine, tenant_id)
    if found is None:
        raise GatewayError(404, "this tenant has never moved")
    return found
