"""The gateway's per-tenant measurements: request series by route and tenant, and usage."""

from __future__ import annotations

from fastapi import FastAPI
from starlette.types import Scope

from gateway.config import Settings
from gateway.metrics import Metrics
from gateway.proxy import RouteTable
from gateway.usage import UsageBook
from services.tenancy.tenantmetrics import MeasureRequests, RequestStats, route_template
from services.tenancy.topk import TopTenants

# Every tenant request matches the catch-all; its label is the service prefix it went to.
_CATCH_ALL = "/{path:path}"


def _tenant_of(scope: Scope) -> str | None:
    tenant_id = scope.get("state", {}).get("tenant_id")
    return None if tenant_id is None else str(tenant_id)


def _db_cost(scope: Scope) -> tuple[float, int]:
    # "<seconds> <rows>" from the service (services.tenancy.dbcost.COST_HEADER).
    raw = scope.get("state", {}).get("db_cost")
    if not raw:
        return 0.0, 0
    try:
        seconds, rows = raw.split(" ", 1)
        return max(float(seconds), 0.0), max(int(rows), 0)
    except ValueError:
        return 0.0, 0


def install(app: FastAPI, *, settings: Settings, metrics: Metrics) -> None:
    """Measure every request (outside the admin gate, so refusals count too)."""
    routes = RouteTable(settings.routes)
    top = TopTenants(settings.METRICS_TENANT_TOP_K) if settings.METRICS_PER_TENANT else None
    stats = RequestStats("gateway", top)
    metrics.registry.register(stats)

    def route_of(scope: Scope) -> str:
        template = route_template(scope)
        if template not in (_CATCH_ALL, "unmatched"):
            return template
        # Tenant requests: labelled by the service prefix (the catch-all's template names
        # no service); anything else stays "unmatched", one bounded series.
        return routes.prefix_of(scope.get("path", "")) or "unmatched"

    def then(scope: Scope, status: int, seconds: float, sent: int) -> None:
        tenant_id = scope.get("state", {}).get("tenant_id")
        book = usage_book(scope)
        if tenant_id is None or book is None:
            return
        db_seconds, rows = _db_cost(scope)
        book.record(
            tenant_id,
            status=status,
            seconds=seconds,
            db_seconds=db_seconds,
            rows=rows,
            body_bytes=sent,
        )

    if settings.METRICS_PER_TENANT:
        app.add_middleware(
            MeasureRequests, stats=stats, route_of=route_of, tenant_of=_tenant_of, then=then
        )


def usage_book(scope: Scope) -> UsageBook | None:
    """The lifespan's usage book (None before the lifespan started)."""
    state = scope.get("state", {}).get("gateway")
    return None if state is None else state.usage
