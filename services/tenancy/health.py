"""Liveness and readiness of a tenant-aware service, unauthenticated (SPEC §5)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from services.tenancy.context import tenancy
from services.tenancy.runtime import database_ready

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """200 while the process runs."""
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"description": "PostgreSQL or the replay store down"}})
async def readyz(request: Request) -> JSONResponse:
    """200 when PostgreSQL answers (Redis down alone: "degraded"); 503 naming what is missing."""
    runtime = tenancy(request)
    database = await run_in_threadpool(database_ready, runtime.engine)
    replay_store = await runtime.nonces.ping()
    missing = [name for name, up in (("postgresql", database), ("redis", replay_store)) if not up]
    # Redis down is fatal only when replay protection was told to fail closed.
    if not database or (not replay_store and runtime.nonces.fail_closed):
        return JSONResponse(
            {"detail": f"{', '.join(missing)} unreachable", "missing": missing}, status_code=503
        )
    details = runtime.tenant_setting.as_details()
    if missing:  # replays to another replica are possible meanwhile: say so
        return JSONResponse(
            {
                "status": "degraded",
                "missing": missing,
                "replay_store": "local",
                "tenant_setting": details,
            }
        )
    return JSONResponse({"status": "ready", "tenant_setting": details})
