"""What `make run` reads from its environment, validated before anything starts."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from kit.servers import port_in_use
from services.tenancy.dburl import to_psycopg2


class ConfigError(Exception):
    """A malformed setting: the message is the one line to print."""


@dataclass(frozen=True)
class RunConfig:
    """What `make run` reads from its environment."""

    data_dir: Path
    gateway_port: int
    users_port: int
    database_url: str | None
    redis_url: str | None
    app_database_url: str | None
    environ: Mapping[str, str]


def _port(environ: Mapping[str, str], name: str, default: int) -> int:
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    if not raw.isdigit() or not 1 <= int(raw) <= 65535:
        raise ConfigError(f"kit: invalid setting {name}: {raw!r} is not a port (1-65535)")
    return int(raw)


def _postgres_url(environ: Mapping[str, str], name: str) -> str | None:
    raw = environ.get(name, "").strip() or None
    if raw is not None:
        try:
            to_psycopg2(raw)
        except Exception as exc:  # sqlalchemy raises several types for a bad URL
            raise ConfigError(f"kit: invalid setting {name}: {exc}") from None
    return raw


def read_config(environ: Mapping[str, str]) -> RunConfig:
    """Validate the settings `make run` itself uses; the services validate the rest."""
    redis_url = environ.get("REDIS_URL", "").strip() or None
    if redis_url and not redis_url.startswith(("redis://", "rediss://", "unix://")):
        raise ConfigError("kit: invalid setting REDIS_URL: not a redis:// URL")
    config = RunConfig(
        data_dir=Path(environ.get("KIT_DATA_DIR", "").strip() or ".data"),
        gateway_port=_port(environ, "GATEWAY_PORT", 8000),
        users_port=_port(environ, "USERS_PORT", 8001),
        database_url=_postgres_url(environ, "DATABASE_URL"),
        redis_url=redis_url,
        app_database_url=_postgres_url(environ, "APP_DATABASE_URL"),
        environ=environ,
    )
    for name in ("OWNER_DATABASE_URL", "GATEWAY_DATABASE_URL"):
        _postgres_url(environ, name)
    if config.gateway_port == config.users_port:
        raise ConfigError("kit: invalid setting USERS_PORT: it equals GATEWAY_PORT")
    for name, port in (("GATEWAY_PORT", config.gateway_port), ("USERS_PORT", config.users_port)):
        if port_in_use(port):
            raise ConfigError(
                f"kit: invalid setting {name}: port {port} on 127.0.0.1 is taken by another "
                f"process; stop it or set {name} to a free port"
            )
    return config
