"""OpenTelemetry spans, exported over OTLP/HTTP to a real receiver this test runs (SPEC §10)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from secrets import token_hex
from typing import Any

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from gateway.tests.factories import create_tenant, wait_for
from kit.stacks import Secrets
from kit.testing import StartService


class Receiver(ThreadingHTTPServer):
    """An OTLP/HTTP (protobuf) trace receiver: keeps every span with its service's name."""

    spans: list[tuple[str, Span]]


class _Handler(BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        request = ExportTraceServiceRequest.FromString(body)
        for resource_spans in request.resource_spans:
            attributes = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    self.server.spans.append((attributes.get("service.name", "?"), span))
        answer = ExportTraceServiceResponse().SerializeToString()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver(("127.0.0.1", 0), _Handler)
    server.spans = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_a_request_is_one_trace_across_gateway_service_and_sql(
    start_service: StartService, secrets: Secrets, receiver: Receiver
) -> None:
    endpoint = {"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{receiver.server_address[1]}"}
    users = start_service("users", endpoint)
    gateway = start_service("gateway", {**endpoint, "USERS_URL": users.url})
    admin = httpx.Client(
        base_url=gateway.url, headers={"Authorization": f"Bearer {secrets.admin_token}"}
    )
    tenant = create_tenant(admin)
    admin.close()
    trace_id, caller_span = token_hex(16), token_hex(8)
    response = httpx.get(
        f"{gateway.url}/users",
        headers={
            "Authorization": f"Bearer {tenant['api_key']}",
            "traceparent": f"00-{trace_id}-{caller_span}-01",
        },
    )
    assert response.status_code == 200, response.text

    def ours() -> list[tuple[str, Span]]:
        return [(s, span) for s, span in receiver.spans if span.trace_id.hex() == trace_id]

    def complete() -> bool:
        # Each process exports in batches: a request span ends after its children and may
        # arrive in a later batch, so wait for every kind this test reads.
        kinds = {(s, span.kind) for s, span in ours()}
        return {
            ("gateway", Span.SPAN_KIND_SERVER),
            ("gateway", Span.SPAN_KIND_CLIENT),
            ("users-service", Span.SPAN_KIND_SERVER),
            ("users-service", Span.SPAN_KIND_CLIENT),
        } <= kinds

    wait_for(complete, within=10)
    spans = ours()
    by_id = {span.span_id.hex(): (s, span) for s, span in spans}
    gateway_server = [
        span for s, span in spans if s == "gateway" and span.kind == Span.SPAN_KIND_SERVER
    ]
    assert len(gateway_server) == 1
    # Continued: the gateway's span is the caller's child, in the caller's trace.
    assert gateway_server[0].parent_span_id.hex() == caller_span
    proxy_call = [s for s in spans if s[0] == "gateway" and s[1].kind == Span.SPAN_KIND_CLIENT]
    assert len(proxy_call) == 1
    users_server = [
        s for s in spans if s[0] == "users-service" and s[1].kind == Span.SPAN_KIND_SERVER
    ]
    assert len(users_server) == 1
    # The service's span hangs under the gateway's proxy call: the parent id changed per hop.
    assert users_server[0][1].parent_span_id == proxy_call[0][1].span_id
    sql = [span for s, span in spans if s == "users-service" and span.kind == Span.SPAN_KIND_CLIENT]
    assert sql, "no SQL span"
    for span in sql:  # each statement under the service's request span
        parent = span.parent_span_id.hex()
        while parent in by_id and by_id[parent][1].kind != Span.SPAN_KIND_SERVER:
            parent = by_id[parent][1].parent_span_id.hex()
        assert by_id[parent][1] == users_server[0][1]
