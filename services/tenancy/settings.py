"""Settings every tenant-aware service shares; a service subclasses it to add its host/port."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import ClassVar, Literal, NoReturn, Self

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import URL

from services.tenancy.dburl import derive_app_url, to_psycopg2
from services.tenancy.logs import LogFormat
from services.tenancy.tenant_setting import TenantSettingMode

EXIT_BAD_SETTING = 2
# The longest statement timeout a service accepts, as its setting or a tenant's own (10 min).
MAX_STATEMENT_TIMEOUT_MS = 600_000


class TenantServiceSettings(BaseSettings):
    """The database role, the gateway's signing secret; UPPER_SNAKE fields = env variables."""

    model_config = SettingsConfigDict(extra="ignore", case_sensitive=True)
    # The name in log lines, connections' application_name and refusals ("users-service").
    SERVICE_NAME: ClassVar[str] = "tenant-service"

    APP_DATABASE_URL: str | None = None
    DATABASE_URL: str | None = None
    INTERNAL_SIGNING_SECRET: SecretStr = Field(min_length=16)
    LOG_FORMAT: LogFormat = "json"
    # Spans are exported only when this is set (OTLP over HTTP, e.g. http://collector:4318).
    OTEL_EXPORTER_OTLP_ENDPOINT: str | None = None
    # auto: the tenant is set in its own round trip on Citus, inside the first statement elsewhere.
    TENANT_SETTING: TenantSettingMode = "auto"
    # Fairness (docs/fairness.md): `off` lifts the per-tenant share of the pool, for the
    # load test's comparison. The gateway reads the same variable for its own policies.
    TENANT_FAIRNESS: Literal["on", "off"] = "on"
    TENANT_POOL_SHARE_PERCENT: int = Field(default=25, ge=1, le=100)
    TENANT_POOL_WAIT_SECONDS: float = Field(default=1.0, ge=0, le=3)
    # A tenant's statements are cancelled after this, unless the gateway signs its own value.
    TENANT_STATEMENT_TIMEOUT_MS: int = Field(default=4000, ge=1, le=MAX_STATEMENT_TIMEOUT_MS)

    @field_validator("OTEL_EXPORTER_OTLP_ENDPOINT", mode="before")
    @classmethod
    def _endpoint(cls, value: object) -> object:
        return otlp_endpoint(value)

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
    def signing_secret(self) -> str:
        return self.INTERNAL_SIGNING_SECRET.get_secret_value()


def otlp_endpoint(value: object) -> object:
    """Empty means unset; otherwise an http(s) URL."""
    if value in (None, ""):
        return None
    if not str(value).startswith(("http://", "https://")):
        raise ValueError("not an http(s):// URL of an OTLP/HTTP receiver")
    return value


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
