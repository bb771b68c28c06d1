"""Prometheus metrics of one gateway app (its own registry: several apps may share a process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class Metrics:
    """The counters the gateway keeps."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "gateway_requests", "Requests answered, by status", ["status"], registry=self.registry
        )
        self.cache = Counter(
            "gateway_tenant_cache",
            "Tenant/key cache lookups: hit_local, hit_redis or miss",
            ["result"],
            registry=self.registry,
        )
        self.cache_rejected = Counter(
            "gateway_tenant_cache_rejected",
            "Redis cache entries ignored: malformed, bad_mac (forged or moved) or expired",
            ["reason"],
            registry=self.registry,
        )
        self.db_lookups = Counter(
            "gateway_tenant_db_lookups",
            "Tenant/key lookups that reached PostgreSQL",
            registry=self.registry,
        )
        self.rate_limited = Counter(
            "gateway_rate_limited", "Requests refused with 429", registry=self.registry
        )
        self.ratelimit_fallback = Counter(
            "gateway_ratelimit_fallback",
            "Rate-limit decisions made in-process (limit / GATEWAY_REPLICAS): redis_down or "
            "redis_busy (every pooled connection in use)",
            ["reason"],
            registry=self.registry,
        )
        self.admission_refused = Counter(
            "gateway_admission_refused",
            "Requests refused by admission: tenant_in_flight (429, over max_in_flight), "
            "tenant_share (429, waited while over its fair share), saturated (503)",
            ["reason"],
            registry=self.registry,
        )
        # Read from the admission queue at scrape time: nothing on the request path.
        self.in_flight = Gauge(
            "gateway_in_flight", "Requests admitted and not finished", registry=self.registry
        )
        self.queued = Gauge(
            "gateway_admission_queued",
            "Requests waiting for a slot (the replica is at GATEWAY_MAX_IN_FLIGHT)",
            registry=self.registry,
        )
        self.key_lookups_refused = Counter(
            "gateway_key_lookups_refused",
            "Unknown-key lookups refused before PostgreSQL: scope client (429) or global (503)",
            ["scope"],
            registry=self.registry,
        )
        self.redis_up = Gauge(
            "gateway_redis_up",
            "1 while Redis answers, 0 while the gateway runs degraded",
            registry=self.registry,
        )
        self.redis_up.set(1)

    def render(self) -> Response:
        """The text exposition format."""
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)


class CountResponses:
    """ASGI middleware: count every response by status."""

    def __init__(self, app: ASGIApp, *, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def counting_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                self.metrics.requests.labels(status=str(message["status"])).inc()
            await send(message)

        await self.app(scope, receive, counting_send)


async def metrics_endpoint(request: Request) -> Response:
    """GET /metrics."""
    return request.state.gateway.metrics.render()
