"""A test-only service built on the shared library whose one route holds a database session.

`GET /hold?ms=N` keeps its tenant's session (and so a pooled connection) busy for N ms with
`pg_sleep`: the tests of the pool share and of the statement timeout need a query of known
length, and the product has none (nor should it).
"""

from __future__ import annotations

from typing import Annotated, ClassVar

from fastapi import APIRouter, Query
from pydantic import Field
from sqlalchemy import text

from services.tenancy.app import create_tenant_app, serve
from services.tenancy.context import SessionDep
from services.tenancy.settings import TenantServiceSettings


class Settings(TenantServiceSettings):
    SERVICE_NAME: ClassVar[str] = "holding-service"
    ROUTE_PREFIX: ClassVar[str] = "/hold"

    HOLDING_HOST: str = "127.0.0.1"
    HOLDING_PORT: int = Field(default=8009, ge=1, le=65535)


router = APIRouter()


@router.get("/hold")
def hold(session: SessionDep, ms: Annotated[int, Query(ge=0, le=60_000)] = 0) -> dict[str, int]:
    """Sleep `ms` in PostgreSQL, inside the tenant's transaction."""
    session.execute(text("SELECT pg_sleep(:seconds)"), {"seconds": ms / 1000})
    return {"held_ms": ms}


def main() -> None:
    settings = Settings.load()
    app = create_tenant_app(settings, title="holding service (tests)", routers=[router])
    serve(app, settings, host=settings.HOLDING_HOST, port=settings.HOLDING_PORT)


if __name__ == "__main__":
    main()
