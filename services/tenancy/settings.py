"""Settings every tenant-aware service shares; a service subclasses it to add its host/port."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import ClassVar, NoReturn, Self

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import URL
from yarl import URL as HttpURL

from services.tenancy.dburl import derive_app_url, to_psycopg2
from services.tenancy.signing import destination_key

EXIT_BAD_SETTING = 2


class TenantServiceSettings(BaseSettings):
    """The database role, the gateway's signing secret; UPPER_SNAKE fields = env variables."""

    model_config = SettingsConfigDict(extra="ignore", case_sensitive=True)
    # The name in log lines, connections' application_name and refusals ("users-service").
    SERVICE_NAME: ClassVar[str] = "tenant-service"
    # The gateway route prefix that reaches this service ("/users"): signatures are bound to it.
    ROUTE_PREFIX: ClassVar[str] = ""

    APP_DATABASE_URL: str | None = None
    DATABASE_URL: str | None = None
    INTERNAL_SIGNING_SECRET: SecretStr = Field(min_length=16)
    # Overrides ROUTE_PREFIX when the gateway routes this service under another prefix.
    SERVICE_ROUTE_PREFIX: str | None = Field(default=None, pattern=r"^(/[A-Za-z0-9._~-]+)+$")
    # Replay protection shared by every replica; unset: each process remembers its own.
    REDIS_URL: str | None = None
    REPLAY_STORE_FAIL_CLOSED: bool = False

    @field_validator("REDIS_URL", "SERVICE_ROUTE_PREFIX", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("REDIS_URL")
    @classmethod
    def _redis_url(cls, value: str | None) -> str | None:
        if value is not None and HttpURL(value).scheme not in ("redis", "rediss", "unix"):
            raise ValueError("not a redis:// URL")
        return value

    @field_validator("APP_DATABASE_URL", "DATABASE_URL")
    @classmethod
    def _postgres_url(cls, value: str | None) -> str | None:
        if value is not None:
            to_psycopg2(value)
        return value

    @model_validator(mode="after")
    def _some_database(self) -> Self:
        if not (self.APP_DATABASE_URL or self.DATABASE_URL):
            raise ValueError("APP_DATABASE_URL: required (or DATABASE_URL to derive it from)")
        if not self.destination:
            raise ValueError("SERVICE_ROUTE_PREFIX: required (the gateway's route prefix, /x)")
        return self

    @classmethod
    def load(cls, environ: Mapping[str, str] | None = None) -> Self:
        """Read the environment; a malformed variable stops the process with one line, exit 2."""
        try:
            if environ is None:
                return cls()  # type: ignore[call-arg]  # read from the environment
            return cls.model_validate({k: v for k, v in environ.items() if k in cls.model_fields})
        except ValidationError as exc:
            stop_on_bad_setting(cls.SERVICE_NAME, exc)

    def database_url(self) -> URL:
        """The restricted role's URL: APP_DATABASE_URL, else derived from DATABASE_URL."""
        url = self.APP_DATABASE_URL or derive_app_url(self.DATABASE_URL or "")
        return to_psycopg2(url, application_name=self.SERVICE_NAME)

    @property
    def destination(self) -> str:
        """The route prefix the gateway signs requests for this service with."""
        return self.SERVICE_ROUTE_PREFIX or self.ROUTE_PREFIX

    @property
    def signing_key(self) -> bytes:
        """This service's key, derived from the shared secret for its destination."""
        return destination_key(self.INTERNAL_SIGNING_SECRET.get_secret_value(), self.destination)


def setting_error_line(program: str, exc: ValidationError) -> str:
    """`program: invalid setting NAME: reason` for the first error pydantic found."""
    err = exc.errors(include_url=False)[0]
    message = str(err["msg"]).removeprefix("Value error, ")
    # A model-level error names its variable itself ("NAME: reason").
    described = f"{err['loc'][0]}: {message}" if err["loc"] else message
    return f"{program}: invalid setting {described}"


def stop_on_bad_setting(program: str, exc: ValidationError) -> NoReturn:
    """Print the one-line error and exit 2: every tenantkit process refuses bad settings so."""
    print(setting_error_line(program, exc), file=sys.stderr, flush=True)
    raise SystemExit(EXIT_BAD_SETTING)
