"""A service's `/metrics` (SPEC §10): requests, latency and database cost, per top-K tenant."""

from __future__ import annotations

from fastapi import FastAPI
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Scope

from services.tenancy.dbcost import DbStats, ReportCost, charge, install_cost_hooks
from services.tenancy.settings import TenantServiceSettings
from services.tenancy.tablecost import TableCost
from services.tenancy.tenantmetrics import MeasureRequests, RequestStats
from services.tenancy.topk import TopTenants

# One prefix for every service: Prometheus' `job` label tells them apart, so one dashboard
# query covers a service added tomorrow.
PREFIX = "service"


def _tenant_of(scope: Scope) -> str | None:
    tenant_id = scope.get("state", {}).get("tenant_id")
    return None if tenant_id is None else str(tenant_id)


class ServiceMetrics:
    """The registry of one service app and the hooks that fill it."""

    def __init__(self, settings: TenantServiceSettings) -> None:
        top = TopTenants(settings.METRICS_TENANT_TOP_K) if settings.METRICS_PER_TENANT else None
        self.top = top
        self.table_cost_seconds = settings.METRICS_TABLE_COST_SECONDS
        self.registry = CollectorRegistry()
        self.requests = RequestStats(PREFIX, top)
        self.db = DbStats(PREFIX, top)
        self.registry.register(self.requests)
        self.registry.register(self.db)

    def install(self, app: FastAPI) -> None:
        """Add `/metrics` and the middlewares that measure every request."""

        async def metrics(_request: Request) -> Response:
            # In a worker thread: a scrape may recount table rows (tablecost) in PostgreSQL.
            body = await run_in_threadpool(generate_latest, self.registry)
            return Response(body, media_type=CONTENT_TYPE_LATEST)

        app.add_route("/metrics", metrics, methods=["GET"])
        app.add_middleware(ReportCost)
        app.add_middleware(MeasureRequests, stats=self.requests, tenant_of=_tenant_of)

    def charge_read(self, tenant: int, seconds: float, rows: int) -> None:
        """Charge one hot read (services/tenancy/asyncread.py) to its tenant."""
        charge(self.db, tenant, seconds=seconds, rows=rows)

    def watch(self, engine: Engine) -> None:
        """Charge every statement on `engine` to its tenant."""
        install_cost_hooks(engine, self.db)
        if self.top is not None:
            self.registry.register(
                TableCost(PREFIX, engine, self.top, refresh_seconds=self.table_cost_seconds)
            )
