"""A tenant-aware service from its routers: lifespan, audit, health, error answers, serving."""

from __future__ import annotations

import logging
import sys
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import TypedDict

import uvicorn
from fastapi import APIRouter, FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from sqlalchemy.engine import URL
from starlette.types import ASGIApp, Receive, Scope, Send

from services.tenancy import health
from services.tenancy.allow import install_method_not_allowed
from services.tenancy.audit import UnsafeDatabase, require_isolation
from services.tenancy.body import ReadBodyFirst
from services.tenancy.coalesce import CoalescingHttpTools
from services.tenancy.errors import install_database_error_handlers
from services.tenancy.fairshare import TenantShares, install_share_error_handler
from services.tenancy.logs import configure_logging
from services.tenancy.observe import ServiceMetrics
from services.tenancy.placements import SHARED
from services.tenancy.replay import NonceStore
from services.tenancy.runtime import (
    POOL_CAPACITY,
    Tenancy,
    create_read_pool,
    create_tenant_engine,
)
from services.tenancy.settings import TenantServiceSettings
from services.tenancy.telemetry import fastapi_native_telemetry, logs_and_traces
from services.tenancy.tenant_setting import choose_tenant_setting

EXIT_UNSAFE_DATABASE = 3
EXIT_NO_DATABASE = 4

# Domain exception -> (HTTP status, detail): the one place a service's errors become answers.
ErrorMap = Mapping[type[Exception], tuple[int, str]]


class State(TypedDict):
    tenancy: Tenancy


class TrailingSlashInsensitive:
    """Route `/users/` as `/users`, without a redirect.

    A redirect from the service would carry its own address back through the gateway. Only
    the routing path changes: `raw_path`, which the gateway signed, stays as received.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] == "http" and len(path) > 1 and path.endswith("/"):
            scope = {**scope, "path": path.rstrip("/") or "/"}
        await self.app(scope, receive, send)


def create_tenant_app(
    settings: TenantServiceSettings,
    *,
    title: str,
    routers: Sequence[APIRouter],
    errors: ErrorMap | None = None,
) -> FastAPI:
    """The app: engine opened and audited in the lifespan, health routes, error mapping."""
    name = settings.SERVICE_NAME
    log = logging.getLogger(name)
    error_map = dict(errors or {})
    metrics = ServiceMetrics(settings)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[State]:
        urls = settings.placement_urls()
        engine = create_tenant_engine(urls.pop(SHARED), application_name=name)
        # One engine per placement (SPEC §11), each audited like shared before serving.
        placements = {p: create_tenant_engine(u, application_name=name) for p, u in urls.items()}
        # The hot reads' psycopg 3 pools, one per placement too (services/tenancy/asyncread.py).
        reads = {
            p: create_read_pool(u, application_name=name)
            for p, u in settings.placement_urls().items()
        }
        tracer = None
        if tracer_provider is not None:
            from services.tenancy.tracing import instrument_engine

            for each in (engine, *placements.values()):
                instrument_engine(each, tracer_provider)
            tracer = tracer_provider.get_tracer("services.tenancy.asyncread")
        metrics.watch(engine)
        nonces = NonceStore(
            settings.REDIS_URL, fail_closed=settings.REPLAY_STORE_FAIL_CLOSED, log=log
        )
        try:
            for each in (engine, *placements.values()):
                await run_in_threadpool(require_isolation, each)
            choice = await run_in_threadpool(choose_tenant_setting, engine, settings.TENANT_SETTING)
            log.info("tenant setting: %s", choice.describe())
            shares = TenantShares.of_pool(
                capacity=POOL_CAPACITY,
                percent=settings.TENANT_POOL_SHARE_PERCENT,
                wait_seconds=settings.TENANT_POOL_WAIT_SECONDS,
                enabled=settings.TENANT_FAIRNESS == "on",
            )
            yield {
                "tenancy": Tenancy(
                    engine=engine,
                    signing_key=settings.signing_key,
                    destination=settings.destination,
                    nonces=nonces,
                    log=log,
                    tenant_setting=choice,
                    shares=shares,
                    statement_timeout_ms=settings.TENANT_STATEMENT_TIMEOUT_MS,
                    placements=placements,
                    read_pools=reads,
                    read_cost=metrics.charge_read,
                    tracer=tracer,
                )
            }
        finally:
            await nonces.aclose()
            for pool in reads.values():
                await pool.close()
            engine.dispose()
            for each in placements.values():
                each.dispose()
            if tracer_provider is not None:
                tracer_provider.shutdown()  # flushes the spans not yet exported

    async def domain_error(_request: Request, error: Exception) -> JSONResponse:
        status, detail = error_map[type(error)]
        return JSONResponse({"detail": detail}, status_code=status)

    app = FastAPI(
        title=title, lifespan=lifespan, redirect_slashes=False, telemetry=fastapi_native_telemetry()
    )
    metrics.install(app)
    # Before TrailingSlashInsensitive, so inside it: the log line sees the scope the router
    # matched. The lifespan reads tracer_provider when it runs, after this assignment.
    tracer_provider = logs_and_traces(
        app, service=name, otlp_endpoint=settings.OTEL_EXPORTER_OTLP_ENDPOINT
    )
    app.add_middleware(TrailingSlashInsensitive)
    # Outermost: the body is complete before routing, so no dependency's query waits on it.
    app.add_middleware(ReadBodyFirst)
    app.include_router(health.router)
    for router in routers:
        app.include_router(router)
    for error in error_map:
        app.add_exception_handler(error, domain_error)
    install_database_error_handlers(app)
    install_share_error_handler(app)
    install_method_not_allowed(app)
    return app


def _refuse(name: str, reason: str, code: int) -> None:
    print(f"{name}: refusing to start: {reason}", file=sys.stderr, flush=True)
    raise SystemExit(code)


def audit_before_serving(name: str, url: URL, *, placement: str = SHARED) -> None:
    """Refuse to start, in one line and a non-zero exit, on a database that is not sealed."""
    # The lifespan audits again; auditing here first turns a refusal into one clean line
    # instead of a server's start-up traceback.
    engine = create_tenant_engine(url, application_name=name)
    where = "" if placement == SHARED else f"placement {placement}: "
    try:
        require_isolation(engine)
    except UnsafeDatabase as exc:
        _refuse(name, f"{where}{exc}", EXIT_UNSAFE_DATABASE)
    except Exception as exc:  # any failure to connect ends the start the same way
        text = str(exc).strip()
        _refuse(
            name,
            f"{where}cannot audit the database: {text.splitlines()[0] if text else exc!r}",
            EXIT_NO_DATABASE,
        )
    finally:
        engine.dispose()


def serve(app: FastAPI, settings: TenantServiceSettings, *, host: str, port: int) -> None:
    """`python -m services.<name>`: audit the database, then serve until SIGTERM."""
    log_config = configure_logging(settings.SERVICE_NAME, settings.LOG_FORMAT)
    for placement, url in settings.placement_urls().items():
        audit_before_serving(settings.SERVICE_NAME, url, placement=placement)
    # access_log=False: services.tenancy.accesslog writes the one line per request.
    # http: one socket write per answer instead of two (services/tenancy/coalesce.py).
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level="info",
        access_log=False,
        log_config=log_config,
        http=CoalescingHttpTools,
    )
