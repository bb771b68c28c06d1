"""Settings every tenant-aware service shares; a service subclasses it to add its host/port."""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping
from typing import ClassVar, Literal, NoReturn, Self

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import URL
from yarl import URL as HttpURL

from services.tenancy.dburl import derive_app_url, to_psycopg2
from services.tenancy.logs import LogFormat
from services.tenancy.placements import parse_tenant_databases, role_urls
from services.tenancy.signing import destination_key
from services.tenancy.tenant_setting import TenantSettingMode

EXIT_BAD_SETTING = 2
# The longest statement timeout a service accepts, as its setting or a tenant's own (10 min).
MAX_STATEMENT_TIMEOUT_MS = 600_000


class TenantServiceSettings(BaseSettings):
    """The database role, the gateway's signing secret; UPPER_SNAKE fields = env variables."""

    model_config = SettingsConfigDict(extra="ignore", case_sensitive=True)
    # The name in log lines, connections' application_name and refusals ("users-service").
    SERVICE_NAME: ClassVar[str] = "tenant-service"
    # The gateway route prefix that reaches this service ("/users"): signatures are bound to it.
    ROUTE_PREFIX: ClassVar[str] = ""

    APP_DATABASE_URL: str | None = None
    DATABASE_URL: str | None = None
    # Extra placements (SPEC §11), reached as the services' role: one engine each.
    TENANT_DATABASES: str | None = None
    # Tenants with their own `tenant` label in /metrics; the rest share "other" (SPEC §10).
    METRICS_TENANT_TOP_K: int = Field(default=50, ge=1, le=1000)
    # false: no per-tenant labels or usage accounting (only to measure what they cost).
    METRICS_PER_TENANT: bool = True
    # Rows/bytes per top-K tenant per tenant table are recounted at most this often (on scrape).
    METRICS_TABLE_COST_SECONDS: int = Field(default=60, ge=1, le=86_400)
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
    INTERNAL_SIGNING_SECRET: SecretStr | None = Field(default=None, min_length=16)
    # Instead of the shared secret: only this service's derived key (64 hex characters), so
    # the service cannot sign for any other destination. See docs/add-a-service.md.
    SERVICE_SIGNING_KEY: SecretStr | None = None
    # Overrides ROUTE_PREFIX when the gateway routes this service under another prefix.
    SERVICE_ROUTE_PREFIX: str | None = Field(default=None, pattern=r"^(/[A-Za-z0-9._~-]+)+$")
    # Replay protection shared by every replica; unset: each process remembers its own.
    REDIS_URL: str | None = None
    REPLAY_STORE_FAIL_CLOSED: bool = False

    @field_validator(
        "REDIS_URL",
        "SERVICE_ROUTE_PREFIX",
        "INTERNAL_SIGNING_SECRET",
        "SERVICE_SIGNING_KEY",
        mode="before",
    )
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("SERVICE_SIGNING_KEY")
    @classmethod
    def _hex_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not re.fullmatch(r"[0-9a-f]{64}", value.get_secret_value()):
            raise ValueError("not 64 lowercase hex characters (a derived destination key)")
        return value

    @field_validator("REDIS_URL")
    @classmethod
    def _redis_url(cls, value: str | None) -> str | None:
        if value is not None and HttpURL(value).scheme not in ("redis", "rediss", "unix"):
            raise ValueError("not a redis:// URL")
        return value

    @field_validator("TENANT_DATABASES")
    @classmethod
    def _placements(cls, value: str | None) -> str | None:
        parse_tenant_databases(value)
        return value

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
        if not self.destination:
            raise ValueError("SERVICE_ROUTE_PREFIX: required (the gateway's route prefix, /x)")
        if (self.INTERNAL_SIGNING_SECRET is None) == (self.SERVICE_SIGNING_KEY is None):
            if self.SERVICE_SIGNING_KEY is not None:
                raise ValueError("SERVICE_SIGNING_KEY: set it or INTERNAL_SIGNING_SECRET, not both")
            raise ValueError("INTERNAL_SIGNING_SECRET: required (or SERVICE_SIGNING_KEY)")
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

    def placement_urls(self) -> dict[str, URL]:
        """The restricted role's URL in every placement, `shared` first."""
        placements = parse_tenant_databases(self.TENANT_DATABASES)
        return {
            name: to_psycopg2(url, application_name=self.SERVICE_NAME)
            for name, url in role_urls(self.database_url(), placements).items()
        }

    @property
    def destination(self) -> str:
        """The route prefix the gateway signs requests for this service with."""
        return self.SERVICE_ROUTE_PREFIX or self.ROUTE_PREFIX

    @property
    def signing_key(self) -> bytes:
        """This service's key: SERVICE_SIGNING_KEY, or derived from the shared secret."""
        if self.SERVICE_SIGNING_KEY is not None:
            return bytes.fromhex(self.SERVICE_SIGNING_KEY.get_secret_value())
        assert self.INTERNAL_SIGNING_SECRET is not None  # the model validator saw to it
        return destination_key(self.INTERNAL_SIGNING_SECRET.get_secret_value(), self.destination)


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
