"""OpenTelemetry, only when OTEL_EXPORTER_OTLP_ENDPOINT is set: spans exported over OTLP/HTTP.

Unset, nothing here is imported or called, so a request pays for no span, only for the
`traceparent` header that services.tenancy.accesslog reads and forwards.
"""

from __future__ import annotations

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from sqlalchemy.engine import Engine

from services.tenancy.tracecontext import TraceContext

__all__ = ["OpenTelemetryMiddleware", "current_trace", "instrument_engine", "make_provider"]


def make_provider(service: str, endpoint: str) -> TracerProvider:
    """A provider exporting this process's spans in batches to `endpoint` (OTLP over HTTP)."""
    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: service}))
    exporter = OTLPSpanExporter(endpoint=endpoint.rstrip("/") + "/v1/traces", timeout=5)
    provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=500))
    return provider


def current_trace() -> TraceContext | None:
    """The active span as a TraceContext, so the log line shows the exported trace's id."""
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return TraceContext(
        trace_id=format(context.trace_id, "032x"),
        span_id=format(context.span_id, "016x"),
        flags=format(int(context.trace_flags), "02x"),
    )


def instrument_engine(engine: Engine, provider: TracerProvider) -> None:
    """A span per SQL statement, child of the request's span."""
    from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor

    # The instrumentation declares sqlalchemy < 2.1 and would silently skip 2.1; the events it
    # uses are unchanged in 2.1, and tests/e2e/test_tracing.py checks the SQL spans arrive.
    SQLAlchemyInstrumentor().instrument(
        engine=engine, tracer_provider=provider, skip_dep_check=True
    )
