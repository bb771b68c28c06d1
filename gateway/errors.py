"""How the gateway refuses a request: one exception, one JSON answer `{"detail": ...}`."""

from __future__ import annotations

from collections.abc import Mapping

from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response


class GatewayError(Exception):
    """A request the gateway answers itself, with this status and detail."""

    def __init__(self, status: int, detail: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = dict(headers or {})


class DependencyDown(GatewayError):
    """PostgreSQL (or another backing service) did not answer in time: 503."""

    def __init__(self, what: str) -> None:
        super().__init__(503, f"{what} is unavailable")


def error_response(status: int, detail: str, headers: Mapping[str, str] | None = None) -> Response:
    """The JSON error body every refusal uses."""
    return JSONResponse({"detail": detail}, status_code=status, headers=dict(headers or {}))


async def handle_gateway_error(request: Request, exc: Exception) -> Response:
    """Exception handler: GatewayError -> its JSON response."""
    assert isinstance(exc, GatewayError)
    return error_response(exc.status, exc.detail, exc.headers)


async def handle_validation_error(request: Request, exc: Exception) -> Response:
    """422 with FastAPI's list of errors, also when the refused input is not UTF-8.

    FastAPI's own handler echoes the raw body back and decodes bytes as UTF-8: a binary body
    sent to a JSON route (found by schemathesis) turned a 422 into a 500.
    """
    assert isinstance(exc, RequestValidationError)
    errors = jsonable_encoder(
        exc.errors(), custom_encoder={bytes: lambda raw: raw.decode("utf-8", "replace")}
    )
    return JSONResponse({"detail": errors}, status_code=422)
