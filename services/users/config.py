"""The users service's settings, read once from the environment at start."""

from __future__ import annotations

import sys
from collections.abc import Mapping

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import URL

from services.tenancy.dburl import derive_app_url, to_psycopg2

SERVICE_NAME = "users-service"


class Settings(BaseSettings):
    """One field per environment variable (see docs/architecture.md, "Processes and settings")."""

    model_config = SettingsConfigDict(extra="ignore", case_sensitive=True)

    APP_DATABASE_URL: str | None = None
    DATABASE_URL: str | None = None
    INTERNAL_SIGNING_SECRET: SecretStr = Field(min_length=16)
    USERS_HOST: str = Field(default="127.0.0.1", min_length=1)
    USERS_PORT: int = Field(default=8001, ge=1, le=65535)

    @field_validator("APP_DATABASE_URL", "DATABASE_URL")
    @classmethod
    def _postgres_url(cls, value: str | None) -> str | None:
        if value is not None:
            to_psycopg2(value)
        return value

    @model_validator(mode="after")
    def _some_database(self) -> Settings:
        if not (self.APP_DATABASE_URL or self.DATABASE_URL):
            raise ValueError("APP_DATABASE_URL: required (or DATABASE_URL to derive it from)")
        return self

    @classmethod
    def load(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read the environment; a malformed variable stops the process with one line, exit 2."""
        try:
            if environ is None:
                return cls()  # type: ignore[call-arg]  # read from the environment
            return cls.model_validate({k: v for k, v in environ.items() if k in cls.model_fields})
        except ValidationError as exc:
            print(f"{SERVICE_NAME}: invalid setting {_describe(exc)}", file=sys.stderr, flush=True)
            raise SystemExit(2) from None

    def database_url(self) -> URL:
        """The restricted role's URL: APP_DATABASE_URL, else derived from DATABASE_URL."""
        if self.APP_DATABASE_URL:
            return to_psycopg2(self.APP_DATABASE_URL, application_name=SERVICE_NAME)
        assert self.DATABASE_URL is not None
        return to_psycopg2(derive_app_url(self.DATABASE_URL), application_name=SERVICE_NAME)


def _describe(exc: ValidationError) -> str:
    err = exc.errors(include_url=False)[0]
    if err["loc"]:
        msg = err["msg"].removeprefix("Value error, ")
        return f"{err['loc'][0]}: {msg}"
    # A model-level error names its variable itself ("NAME: reason").
    return err["msg"].removeprefix("Value error, ")
