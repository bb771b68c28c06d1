"""create_app(settings): the users service, with its engine opened and audited in the lifespan."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TypedDict

from fastapi import FastAPI, Request, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from services.tenancy.audit import require_isolation
from services.tenancy.errors import install_database_error_handlers
from services.tenancy.runtime import Tenancy, create_tenant_engine
from services.users import health, routes
from services.users.config import SERVICE_NAME, Settings
from services.users.service import DuplicateEmail, UserNotFound

log = logging.getLogger(SERVICE_NAME)


class State(TypedDict):
    tenancy: Tenancy


_DOMAIN_ERRORS: dict[type[Exception], tuple[int, str]] = {
    UserNotFound: (status.HTTP_404_NOT_FOUND, "user not found"),
    DuplicateEmail: (status.HTTP_409_CONFLICT, "a user with this email already exists"),
}


async def _domain_error(_request: Request, error: Exception) -> JSONResponse:
    code, detail = _DOMAIN_ERRORS[type(error)]
    return JSONResponse({"detail": detail}, status_code=code)


def create_app(settings: Settings) -> FastAPI:
    """The users service app; the lifespan refuses to start on a database that is not sealed."""

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[State]:
        engine = create_tenant_engine(settings.database_url(), application_name=SERVICE_NAME)
        try:
            await run_in_threadpool(require_isolation, engine)
            secret = settings.INTERNAL_SIGNING_SECRET.get_secret_value()
            yield {"tenancy": Tenancy(engine=engine, signing_secret=secret, log=log)}
        finally:
            engine.dispose()

    # redirect_slashes=False: a redirect from /users to /users/ would reveal this service's
    # address to the client; both paths are routed instead.
    app = FastAPI(title="tenantkit users service", lifespan=lifespan, redirect_slashes=False)
    app.include_router(health.router)
    app.include_router(routes.router)
    for error in _DOMAIN_ERRORS:
        app.add_exception_handler(error, _domain_error)
    install_database_error_handlers(app)
    return app
