"""The gateway's settings: one BaseSettings whose fields are the environment variables."""

from __future__ import annotations

import hashlib
import hmac
import re
from typing import Annotated, Literal, Self

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from sqlalchemy.engine import make_url
from yarl import URL

from services.tenancy.dburl import derive_app_url, derive_gateway_url, plain, to_psycopg2
from services.tenancy.logs import LogFormat
from services.tenancy.placements import parse_tenant_databases, role_urls
from services.tenancy.settings import otlp_endpoint, stop_on_bad_setting

CREDENTIAL_MODES = frozenset({"api_key", "jwt"})
IDENTIFICATION_MODES = frozenset({"subdomain", "header"})
AUTH_MODES = CREDENTIAL_MODES | IDENTIFICATION_MODES

# A prefix is one or more plain path segments: "/users", "/billing/v2".
_PREFIX = re.compile(r"^(/[A-Za-z0-9._~-]+)+$")
_DOMAIN = re.compile(r"^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
MIN_SECRET_LENGTH = 16


def parse_routes(raw: str) -> dict[str, str]:
    """`"/users=http://h:1,/orders=http://h:2"` -> {"/users": "http://h:1", ...}."""
    routes: dict[str, str] = {}
    for item in raw.split(","):
        item = item.strip()
        if not item:
            continue
        prefix, sep, upstream = item.partition("=")
        prefix, upstream = prefix.strip().rstrip("/") or "/", upstream.strip()
        if not sep or not _PREFIX.match(prefix):
            raise ValueError(f"{item!r} is not PREFIX=URL with a path prefix like /users")
        url = URL(upstream)
        if url.scheme not in ("http", "https") or not url.host or url.path not in ("", "/"):
            raise ValueError(f"{upstream!r} is not an http(s)://host:port upstream without a path")
        if prefix in routes:
            raise ValueError(f"prefix {prefix} is listed twice")
        routes[prefix] = str(url.origin())
    if not routes:
        raise ValueError("no routes")
    return routes


def _check_postgres_url(value: str | None) -> str | None:
    if value is not None:
        to_psycopg2(value)
    return value


class GatewayDatabase(BaseSettings):
    """The gateway role's connection (SPEC §7), shared by the gateway and its CLI."""

    model_config = SettingsConfigDict(extra="ignore", case_sensitive=True)

    GATEWAY_DATABASE_URL: str | None = None
    # Only to derive the gateway role's URL from (migrations derive the same one).
    DATABASE_URL: str | None = None
    # The services' role, used only by the tenant lifecycle (purge, export, import): the
    # gateway role has no rights on tenant tables. Unset: derived from DATABASE_URL.
    APP_DATABASE_URL: str | None = None
    TENANT_DELETION_GRACE_SECONDS: int = Field(default=2_592_000, ge=0, le=10 * 365 * 86400)
    # The HMAC key of deletion certificates; unset: derived from ADMIN_TOKEN.
    DELETION_CERTIFICATE_SECRET: str | None = Field(default=None, min_length=MIN_SECRET_LENGTH)
    # Extra placements (SPEC §11), reached as the gateway role (a tenant's parent row).
    TENANT_DATABASES: str | None = None
    # A running move whose heartbeat is older than this died with its process: any gateway
    # replica takes it over (rolls it back, or finishes it once flipped). Its runner beats
    # five times per span; give every gateway and CLI the same value.
    MOVE_HEARTBEAT_TIMEOUT_SECONDS: float = Field(default=15, ge=1, le=3600)

    _postgres_url = field_validator("GATEWAY_DATABASE_URL", "DATABASE_URL", "APP_DATABASE_URL")(
        _check_postgres_url
    )

    @field_validator("TENANT_DATABASES")
    @classmethod
    def _placements(cls, value: str | None) -> str | None:
        parse_tenant_databases(value)
        return value

    @model_validator(mode="after")
    def _some_database(self) -> Self:
        if not (self.GATEWAY_DATABASE_URL or self.DATABASE_URL):
            raise ValueError("GATEWAY_DATABASE_URL: required (or DATABASE_URL to derive it from)")
        if self.GATEWAY_DATABASE_URL and self.DATABASE_URL:
            # Both given and apart: one of them is a leftover; guessing would be worse.
            given, bootstrap = make_url(self.GATEWAY_DATABASE_URL), make_url(self.DATABASE_URL)
            if (given.host, given.port, given.database) != (
                bootstrap.host,
                bootstrap.port,
                bootstrap.database,
            ):
                raise ValueError(
                    "GATEWAY_DATABASE_URL: names another database than DATABASE_URL; set one"
                )
        return self

    def database_url(self) -> str:
        """GATEWAY_DATABASE_URL, else the gateway role derived from DATABASE_URL."""
        if self.GATEWAY_DATABASE_URL:
            return self.GATEWAY_DATABASE_URL
        return plain(derive_gateway_url(self.DATABASE_URL or ""))

    def placement_urls(self) -> dict[str, str]:
        """The gateway role's URL in every placement, `shared` first (plain URLs)."""
        placements = parse_tenant_databases(self.TENANT_DATABASES)
        return {n: plain(u) for n, u in role_urls(self.database_url(), placements).items()}

    def lifecycle_placement_urls(self) -> dict[str, str]:
        """The services' role's URL in every placement (the mover's), or {} without one."""
        url = self.lifecycle_database_url()
        if url is None:
            return {}
        placements = parse_tenant_databases(self.TENANT_DATABASES)
        return {n: plain(u) for n, u in role_urls(to_psycopg2(url), placements).items()}

    def lifecycle_database_url(self) -> str | None:
        """APP_DATABASE_URL, else the services' role derived from DATABASE_URL, else None."""
        if self.APP_DATABASE_URL:
            return self.APP_DATABASE_URL
        return plain(derive_app_url(self.DATABASE_URL)) if self.DATABASE_URL else None

    def certificate_key(self) -> bytes | None:
        """The HMAC key of deletion certificates (None when neither secret is set)."""
        secret = self.DELETION_CERTIFICATE_SECRET or getattr(self, "ADMIN_TOKEN", None)
        if not secret:
            return None
        return hmac.new(secret.encode(), b"tenantkit-deletion-certificate", hashlib.sha256).digest()


class Settings(GatewayDatabase):
    """Everything the gateway reads from its environment."""

    model_config = SettingsConfigDict(extra="ignore", case_sensitive=True)

    REDIS_URL: str = "redis://127.0.0.1:6379/0"
    ADMIN_TOKEN: str = Field(min_length=MIN_SECRET_LENGTH)
    INTERNAL_SIGNING_SECRET: str = Field(min_length=MIN_SECRET_LENGTH)
    # The key of the MAC over cached values in Redis; unset: derived from ADMIN_TOKEN.
    GATEWAY_CACHE_SECRET: str | None = Field(default=None, min_length=MIN_SECRET_LENGTH)
    # 32 bytes at least: PyJWT (rightly) warns about shorter HS256 keys.
    JWT_SECRET: str | None = Field(default=None, min_length=32)
    GATEWAY_AUTH_MODES: Annotated[frozenset[str], NoDecode] = frozenset({"api_key", "jwt"})
    GATEWAY_BASE_DOMAIN: str | None = None
    USERS_URL: str = "http://127.0.0.1:8001"
    GATEWAY_ROUTES: str | None = None
    DEFAULT_RATE_LIMIT_PER_SECOND: int = Field(default=100, ge=0)
    # Rate-limit tokens a replica may reserve per Redis call for a busy tenant (1: a call
    # per request); at most 10 ms of the tenant's rate (gateway/ratelease.py).
    RATE_LIMIT_LEASE_MAX: int = Field(default=64, ge=1, le=10_000)
    # Replicas sharing the rate limits: without Redis each enforces limit / this many.
    GATEWAY_REPLICAS: int = Field(default=1, ge=1, le=10_000)
    # Redis calls in flight at once (= pooled connections); a call waits 50 ms for one.
    REDIS_MAX_CONNECTIONS: int = Field(default=64, ge=1, le=10_000)
    TENANT_CACHE_TTL_SECONDS: float = Field(default=30, gt=0, le=86400)
    UPSTREAM_TIMEOUT_SECONDS: float = Field(default=10, gt=0, le=3600)
    REQUEST_BODY_TIMEOUT_SECONDS: float = Field(default=10, gt=0, le=3600)
    # Checked when set: a token for another audience or from another issuer is refused.
    JWT_AUDIENCE: str | None = None
    JWT_ISSUER: str | None = None
    # Fairness (gateway/admission.py, gateway/keyguard.py); all per replica.
    TENANT_MAX_IN_FLIGHT: int = Field(default=16, ge=0, le=100_000)
    GATEWAY_MAX_IN_FLIGHT: int = Field(default=128, ge=0, le=100_000)
    GATEWAY_QUEUE_TIMEOUT_SECONDS: float = Field(default=2, gt=0, le=60)
    KEY_LOOKUPS_PER_SECOND: int = Field(default=20, ge=0, le=100_000)
    KEY_LOOKUPS_PER_CLIENT_PER_SECOND: int = Field(default=5, ge=0, le=100_000)
    # A measurement switch for the load tests' "protection off" runs, not for production.
    TENANT_FAIRNESS: Literal["on", "off"] = "on"
    GATEWAY_HOST: str = "127.0.0.1"
    GATEWAY_PORT: int = Field(default=8000, ge=1, le=65535)
    # Tenants with their own `tenant` label in /metrics; the rest share "other" (SPEC §10).
    METRICS_TENANT_TOP_K: int = Field(default=50, ge=1, le=1000)
    # false: no per-request metrics by route/tenant and no usage accounting (to measure them).
    METRICS_PER_TENANT: bool = True
    # When set, /admin and /metrics are served here (and /admin no longer on GATEWAY_PORT).
    GATEWAY_INTERNAL_PORT: int | None = Field(default=None, ge=1, le=65535)
    GATEWAY_INTERNAL_HOST: str | None = None
    LOG_FORMAT: LogFormat = "json"
    OTEL_EXPORTER_OTLP_ENDPOINT: str | None = None
    # How often the merged /openapi.json asks each upstream for its document again.
    OPENAPI_REFRESH_SECONDS: float = Field(default=60, gt=0, le=86400)

    _otlp_endpoint = field_validator("OTEL_EXPORTER_OTLP_ENDPOINT", mode="before")(otlp_endpoint)

    @field_validator(
        "JWT_SECRET",
        "JWT_AUDIENCE",
        "JWT_ISSUER",
        "GATEWAY_BASE_DOMAIN",
        "GATEWAY_ROUTES",
        "GATEWAY_INTERNAL_PORT",
        "GATEWAY_INTERNAL_HOST",
        "GATEWAY_CACHE_SECRET",
        mode="before",
    )
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        # `JWT_SECRET=` in an env file means "not set", as in a shell.
        return None if value == "" else value

    @field_validator("REDIS_URL")
    @classmethod
    def _redis_url(cls, value: str) -> str:
        if URL(value).scheme not in ("redis", "rediss", "unix"):
            raise ValueError("not a redis:// URL")
        return value

    @field_validator("GATEWAY_AUTH_MODES", mode="before")
    @classmethod
    def _modes(cls, value: object) -> frozenset[str]:
        items = value.split(",") if isinstance(value, str) else list(value)  # type: ignore[call-overload]
        modes = frozenset(str(m).strip() for m in items if str(m).strip())
        unknown = modes - AUTH_MODES
        if unknown:
            raise ValueError(
                f"unknown mode(s) {', '.join(sorted(unknown))}; use {sorted(AUTH_MODES)}"
            )
        if not modes:
            raise ValueError("at least one mode is needed")
        return modes

    @field_validator("GATEWAY_BASE_DOMAIN")
    @classmethod
    def _domain(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        value = value.strip().lower().strip(".")
        if not _DOMAIN.match(value):
            raise ValueError("not a domain name like example.com")
        return value

    @field_validator("USERS_URL")
    @classmethod
    def _users_url(cls, value: str) -> str:
        parse_routes(f"/users={value}")
        return value

    @field_validator("GATEWAY_ROUTES")
    @classmethod
    def _routes(cls, value: str | None) -> str | None:
        if value is not None and value.strip():
            parse_routes(value)
            return value
        return None

    @model_validator(mode="after")
    def _modes_have_their_settings(self) -> Settings:
        # Raised as ValueError naming the variable, so the one-line error names it too.
        if "jwt" in self.GATEWAY_AUTH_MODES and not self.JWT_SECRET:
            if {"jwt"} == self.GATEWAY_AUTH_MODES:
                raise ValueError("JWT_SECRET: the jwt mode needs it")
            # The default modes include jwt; without a secret the mode is simply off (SPEC §3).
            self.GATEWAY_AUTH_MODES = self.GATEWAY_AUTH_MODES - {"jwt"}
        if "subdomain" in self.GATEWAY_AUTH_MODES and not self.GATEWAY_BASE_DOMAIN:
            raise ValueError("GATEWAY_BASE_DOMAIN: the subdomain mode needs it")
        if self.GATEWAY_INTERNAL_PORT == self.GATEWAY_PORT:
            raise ValueError("GATEWAY_INTERNAL_PORT: must differ from GATEWAY_PORT")
        return self

    @property
    def routes(self) -> dict[str, str]:
        """Path prefix -> upstream origin."""
        return parse_routes(self.GATEWAY_ROUTES or f"/users={self.USERS_URL}")

    @property
    def cache_secret(self) -> str:
        """What the cache MAC key derives from: gateway-only, never the services' secret."""
        return self.GATEWAY_CACHE_SECRET or self.ADMIN_TOKEN

    @property
    def credential_modes(self) -> frozenset[str]:
        return self.GATEWAY_AUTH_MODES & CREDENTIAL_MODES

    @classmethod
    def load(cls, **overrides: object) -> Settings:
        """Read the environment; a malformed variable stops the process with one line."""
        try:
            return cls(**overrides)  # type: ignore[arg-type]
        except ValidationError as exc:
            stop_on_bad_setting("gateway", exc)


class CliSettings(GatewayDatabase):
    """What `python -m gateway.cli` needs: the database, and Redis to publish invalidations."""

    REDIS_URL: str | None = None
    # Only to derive the deletion certificates' key when DELETION_CERTIFICATE_SECRET is unset.
    ADMIN_TOKEN: str | None = None
