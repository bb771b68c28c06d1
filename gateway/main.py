"""create_app(settings): the gateway's FastAPI app; the lifespan owns every connection."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import aiohttp
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError

from gateway import (
    admin,
    admin_lifecycle,
    admin_move,
    health,
    mover,
    moverecovery,
    observe,
    openapi,
    ownpaths,
    pipeline,
    purger,
)
from gateway.admission import Admission
from gateway.breaker import RedisLink, make_client
from gateway.cacheseal import Sealer, derive_cache_key
from gateway.config import Settings
from gateway.dispatch import TenantPaths
from gateway.errors import GatewayError, handle_gateway_error, handle_validation_error
from gateway.hold import Holds
from gateway.invalidation import Invalidator
from gateway.keyguard import KeyLookupGuard
from gateway.listeners import ListenerGate
from gateway.metrics import CountResponses, Metrics, metrics_endpoint
from gateway.placements import Placements
from gateway.proxy import RouteTable, make_session
from gateway.ratelimit import RateLimiter
from gateway.requestid import RequestIdMiddleware
from gateway.state import GatewayState
from gateway.store import make_engine
from gateway.tenants import TenantDirectory
from gateway.usage import UsageBook
from services.tenancy.signing import Signer
from services.tenancy.telemetry import fastapi_native_telemetry, logs_and_traces

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
log = logging.getLogger("gateway")


def proxy_spans(provider: TracerProvider | None) -> list[aiohttp.TraceConfig] | None:
    """A span per proxied call (and its traceparent injected) when tracing is on."""
    if provider is None:
        return None
    from opentelemetry.instrumentation.aiohttp_client import create_trace_config

    return [create_trace_config(tracer_provider=provider)]


def create_app(settings: Settings) -> FastAPI:
    """The gateway for these settings; nothing connects until the lifespan starts."""
    metrics = Metrics()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, GatewayState]]:
        engine = make_engine(settings.database_url())
        pool = settings.REDIS_MAX_CONNECTIONS
        redis = RedisLink(make_client(settings.REDIS_URL, max_connections=pool), max_in_flight=pool)
        # Pub/sub blocks on reads by design, so it gets its own client without a read timeout.
        pubsub_client = make_client(settings.REDIS_URL, socket_timeout=None)
        session = make_session(
            timeout_seconds=settings.UPSTREAM_TIMEOUT_SECONDS,
            trace_configs=proxy_spans(tracer_provider),
        )
        directory = TenantDirectory(
            engine=engine,
            redis=redis,
            metrics=metrics,
            ttl_seconds=settings.TENANT_CACHE_TTL_SECONDS,
            sealer=Sealer(derive_cache_key(settings.cache_secret)),
        )
        holds = Holds()
        invalidator = Invalidator(redis=redis, directory=directory, holds=holds)
        fair = settings.TENANT_FAIRNESS == "on"
        state = GatewayState(
            settings=settings,
            engine=engine,
            redis=redis,
            session=session,
            routes=RouteTable(settings.routes),
            metrics=metrics,
            directory=directory,
            limiter=RateLimiter(
                redis=redis,
                metrics=metrics,
                default_per_second=settings.DEFAULT_RATE_LIMIT_PER_SECOND,
                replicas=settings.GATEWAY_REPLICAS,
                lease_max=settings.RATE_LIMIT_LEASE_MAX,
            ),
            invalidator=invalidator,
            usage=UsageBook(redis),
            signer=Signer(settings.INTERNAL_SIGNING_SECRET),
            admission=Admission(
                default_cap=settings.TENANT_MAX_IN_FLIGHT,
                capacity=settings.GATEWAY_MAX_IN_FLIGHT,
                queue_timeout_seconds=settings.GATEWAY_QUEUE_TIMEOUT_SECONDS,
                metrics=metrics,
                enabled=fair,
            ),
            key_guard=KeyLookupGuard(
                per_second=settings.KEY_LOOKUPS_PER_SECOND,
                per_client_per_second=settings.KEY_LOOKUPS_PER_CLIENT_PER_SECOND,
                metrics=metrics,
                enabled=fair,
            ),
            placements=Placements(settings.placement_urls()),
            holds=holds,
            mover_engines=mover.app_engines(settings.lifecycle_placement_urls()),
        )
        # The lifecycle reaches tenant tables through the mover's engines (the services'
        # role in every placement): one pool per placement, not two.
        state.lifecycle = purger.Lifecycle(
            engine=engine,
            app_engines=state.mover_engines,
            key=settings.certificate_key() or b"",
            grace_seconds=settings.TENANT_DELETION_GRACE_SECONDS,
            placements=state.placements,
        )
        listener = asyncio.create_task(invalidator.listen(pubsub_client))
        purging = asyncio.create_task(purger.run_purger(state.lifecycle, invalidator))
        recovering = asyncio.create_task(
            moverecovery.run_recovery(
                moverecovery.Recovery(
                    directory=engine,
                    app_engines=state.mover_engines,
                    signals=admin_move.signals(state),
                    timeout_seconds=settings.MOVE_HEARTBEAT_TIMEOUT_SECONDS,
                )
            )
        )
        docs_refresher = asyncio.create_task(merged_openapi.keep_fresh(session))
        stop_flushing = asyncio.Event()
        flusher = asyncio.create_task(state.usage.run(stop_flushing))
        try:
            yield {"gateway": state}
        finally:
            for task in (listener, purging, recovering, docs_refresher):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            stop_flushing.set()
            await flusher  # its last flush: a restart loses no counted request
            await invalidator.aclose()
            await session.close()
            await redis.client.aclose()
            await pubsub_client.aclose()
            state.placements.dispose()
            for each in state.mover_engines.values():
                each.dispose()
            engine.dispose()
            if tracer_provider is not None:
                tracer_provider.shutdown()  # flushes the spans not yet exported

    app = FastAPI(
        title="tenantkit gateway",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        # A redirect from /users to /users/ would hand the client the upstream's address.
        redirect_slashes=False,
        telemetry=fastapi_native_telemetry(),
    )
    app.add_exception_handler(GatewayError, handle_gateway_error)
    app.add_exception_handler(RequestValidationError, handle_validation_error)
    app.include_router(health.router)
    app.include_router(admin.router)
    app.include_router(admin_lifecycle.router)
    app.include_router(admin_move.router)
    app.add_route("/metrics", metrics_endpoint, methods=["GET"])
    # The admin API is described only where it is served: not once it has moved to the
    # internal listener (GATEWAY_INTERNAL_PORT), whose clients hold the admin token anyway.
    merged_openapi = openapi.MergedOpenApi(
        own=app.openapi,
        routes=RouteTable(settings.routes),
        refresh_seconds=settings.OPENAPI_REFRESH_SECONDS,
        describe_admin=settings.GATEWAY_INTERNAL_PORT is None,
    )
    openapi.install(app, merged_openapi)
    # Before the catch-all: an unknown method on the gateway's own paths is a 405.
    own = [*health.router.routes, *admin.router.routes, *app.router.routes]
    ownpaths.refuse_other_methods(app, own, METHODS)
    app.add_route("/{path:path}", pipeline.handle, methods=METHODS)
    # Innermost: tenant requests skip FastAPI's router and wrappers (gateway/dispatch.py).
    app.add_middleware(
        TenantPaths,
        handler=pipeline.handle,
        catch_all=app.router.routes[-1],
        own_routes=lambda: app.router.routes,
        methods=METHODS,
        exception_handlers=app.exception_handlers,
    )
    app.add_middleware(admin.AdminGate, admin_token=settings.ADMIN_TOKEN)
    app.add_middleware(
        ListenerGate,
        admin_token=settings.ADMIN_TOKEN,
        internal_port=settings.GATEWAY_INTERNAL_PORT,
    )
    app.add_middleware(CountResponses, metrics=metrics)
    observe.install(app, settings=settings, metrics=metrics)
    # Outside the admin gate, so refused admin calls get their log line too; the lifespan
    # reads tracer_provider when it runs, after this assignment.
    tracer_provider = logs_and_traces(
        app, service="gateway", otlp_endpoint=settings.OTEL_EXPORTER_OTLP_ENDPOINT
    )
    # Added last, so outermost: every answer, errors included, carries the request id.
    app.add_middleware(RequestIdMiddleware)
    return app
