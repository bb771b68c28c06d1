"""create_app(settings): the users service, built on the shared tenancy library."""

from __future__ import annotations

from fastapi import FastAPI, status

from services.tenancy.app import create_tenant_app
from services.users import routes
from services.users.config import Settings
from services.users.service import DuplicateEmail, TenantGone, UserNotFound


def create_app(settings: Settings) -> FastAPI:
    """The users app; its lifespan refuses to start on a database that is not sealed."""
    return create_tenant_app(
        settings,
        title="tenantkit users service",
        routers=[routes.router],
        errors={
            UserNotFound: (status.HTTP_404_NOT_FOUND, "user not found"),
            DuplicateEmail: (status.HTTP_409_CONFLICT, "a user with this email already exists"),
            TenantGone: (status.HTTP_404_NOT_FOUND, "tenant not found"),
        },
    )
