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


@router.get("/readyz", responses={503: {"description": "PostgreSQL unreachable"}})
async def readyz(request: Request) -> JSONResponse:
    """200 when PostgreSQL answers the service's role; 503 naming what is missing otherwise."""
    runtime = tenancy(request)
    if await run_in_threadpool(database_ready, runtime.engine):
        return JSONResponse(
            {"status": "ready", "tenant_setting": runtime.tenant_setting.as_details()}
        )
    return JSONResponse(
        {"detail": "postgresql unreachable", "missing": ["postgresql"]}, status_code=503
    )
