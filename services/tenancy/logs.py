"""Log lines: one JSON object per line (LOG_FORMAT=json) or plain text, for every process."""

from __future__ import annotations

import json
import logging
import logging.config
import sys
from datetime import UTC, datetime
from typing import Any, Literal

from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter

LogFormat = Literal["json", "text"]
# The fields every request line carries, in this order (SPEC §10).
REQUEST_FIELDS = ("request_id", "tenant_id", "method", "route", "status", "duration_ms", "trace_id")
_TEXT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class _TextWithRequest(logging.Formatter):
    """Text for humans: the request fields follow the message as key=value."""

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extras = [f"{k}={getattr(record, k)}" for k in REQUEST_FIELDS if hasattr(record, k)]
        return f"{line} {' '.join(extras)}" if extras else line


class RequestLine(logging.LogRecord):
    """The one line per request (services.tenancy.accesslog): its fields are known in advance."""


class _Json(JsonFormatter):
    """python-json-logger's lines; the request line, the same JSON built directly.

    The generic path walks every attribute of the record and encodes through a custom
    encoder: most of the request line's cost in issue 10's profile (~5 % of each hop).
    """

    def format(self, record: logging.LogRecord) -> str:
        if type(record) is not RequestLine or record.exc_info or record.stack_info:
            return super().format(record)
        fields = record.__dict__
        data: dict[str, Any] = {
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            **self.static_fields,
        }
        for key in REQUEST_FIELDS:
            data[key] = fields.get(key)
        data["time"] = datetime.fromtimestamp(record.created, tz=UTC).isoformat()
        return json.dumps(data, ensure_ascii=False, default=str)


def _formatter_config(service: str, log_format: LogFormat) -> dict[str, Any]:
    if log_format == "text":
        return {"()": _TextWithRequest, "fmt": _TEXT}
    return {
        "()": _Json,
        "fmt": "%(levelname)s %(name)s %(message)s",
        "rename_fields": {"levelname": "level", "name": "logger"},
        "static_fields": {"service": service},
        # ISO 8601 in UTC with microseconds: sortable across processes and hosts.
        "timestamp": "time",
        "json_ensure_ascii": False,
        # uvicorn's copy of each message with terminal colour codes: noise in a JSON line.
        "reserved_attrs": [*RESERVED_ATTRS, "color_message"],
    }


def log_config(service: str, log_format: LogFormat) -> dict[str, Any]:
    """A logging dictConfig for the process and for uvicorn's own loggers (its log_config)."""
    handler = {"class": "logging.StreamHandler", "formatter": "line", "stream": "ext://sys.stderr"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"line": _formatter_config(service, log_format)},
        "handlers": {"stderr": handler},
        "root": {"handlers": ["stderr"], "level": "INFO"},
        "loggers": {
            # uvicorn's loggers carry handlers of their own by default: replaced by the root's.
            name: {"handlers": [], "propagate": True, "level": "INFO"}
            for name in ("uvicorn", "uvicorn.error", "uvicorn.access")
        },
    }


def configure_logging(service: str, log_format: LogFormat) -> dict[str, Any]:
    """Apply `log_config` now (for lines before the server starts) and return it for uvicorn."""
    config = log_config(service, log_format)
    logging.config.dictConfig(config)
    sys.stderr.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    return config
