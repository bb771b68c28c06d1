"""The request line's short JSON path writes exactly what python-json-logger writes."""

from __future__ import annotations

import json
import logging
import logging.config
from typing import Any

from pythonjsonlogger.json import JsonFormatter

from services.tenancy.logs import RequestLine, log_config

FIELDS: dict[str, Any] = {
    "request_id": "81c5496d5e5f41fbb7b27a124e5b42fa",
    "tenant_id": 7,
    "method": "GET",
    "route": "/users/{user_id}",
    "status": 200,
    "duration_ms": 1.234,
    "trace_id": "dd1f573f9470e23c022e9bc11241ced9",
}


def _record(kind: type[logging.LogRecord], fields: dict[str, Any]) -> logging.LogRecord:
    record = kind("access", logging.INFO, __file__, 0, "%s %s %s", ("GET", "/u", 200), None)
    record.created = 1_796_000_000.123456  # the same instant for both
    record.__dict__.update(fields)
    return record


def test_the_request_line_is_byte_for_byte_the_generic_json_line() -> None:
    config = log_config("users-service", "json")["formatters"]["line"]
    fast = {k: v for k, v in config.items() if k != "()"}
    ours = config["()"](**fast)
    generic = JsonFormatter(**fast)
    # Before the signed context holds (no tenant, no route), and a path that is not ASCII.
    for fields in (FIELDS, {**FIELDS, "tenant_id": None, "route": None, "request_id": "ü"}):
        expected = generic.format(_record(logging.LogRecord, fields))
        got = ours.format(_record(RequestLine, fields))
        assert got == expected
        assert json.loads(got)["service"] == "users-service"
