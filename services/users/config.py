"""The users service's settings, read once from the environment at start."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from services.tenancy.settings import TenantServiceSettings

SERVICE_NAME = "users-service"


class Settings(TenantServiceSettings):
    """APP_DATABASE_URL (or DATABASE_URL), INTERNAL_SIGNING_SECRET, USERS_HOST, USERS_PORT."""

    SERVICE_NAME: ClassVar[str] = SERVICE_NAME
    ROUTE_PREFIX: ClassVar[str] = "/users"

    USERS_HOST: str = Field(default="127.0.0.1", min_length=1)
    USERS_PORT: int = Field(default=8001, ge=1, le=65535)
