"""What every process adds to its app to be seen: the request log line and, when asked, spans."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import FastAPI
from fastapi.telemetry import TelemetryConfig

from services.tenancy.accesslog import AccessLog

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider


def logs_and_traces(
    app: FastAPI, *, service: str, otlp_endpoint: str | None
) -> TracerProvider | None:
    """Add the access log (inside) and, with an OTLP endpoint, OpenTelemetry's server span."""
    if not otlp_endpoint:
        app.add_middleware(AccessLog)
        return None
    # Imported only here: without an endpoint the process never loads the SDK.
    from services.tenancy import tracing

    provider = tracing.make_provider(service, otlp_endpoint)
    app.add_middleware(AccessLog, current_trace=tracing.current_trace)
    # exclude_spans: no span per ASGI send/receive message, one span per request.
    app.add_middleware(
        tracing.OpenTelemetryMiddleware, tracer_provider=provider, exclude_spans=["receive", "send"]
    )
    return provider


def fastapi_native_telemetry() -> TelemetryConfig:
    """FastAPI's own OpenTelemetry hooks, off: the middleware above makes the spans."""
    # Left on, FastAPI asks OpenTelemetry for its global providers on every request (we never
    # set them, so it finds none): ~3.5 % of the gateway's CPU in issue 10's profile.
    return {"tracing": False, "metrics": False, "logs": False}
