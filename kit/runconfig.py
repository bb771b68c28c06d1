"""What `make run` reads from its environment, validated before anything starts."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from kit.servers import port_in_use
from services.tenancy.dburl import to_psycopg2
from services.tenancy.placements import SHARED, parse_tenant_databases


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
    # Placements on other servers, as exported (TENANT_DATABASES), and the ones `make run`
    # creates on its own server (KIT_PLACEMENTS: names only).
    tenant_databases: Mapping[str, str] = field(default_factory=dict)
    kit_placements: tuple[str, ...] = ()


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


def _kit_placements(raw: str, taken: Mapping[str, str]) -> tuple[str, ...]:
    names = tuple(n.strip() for n in raw.split(",") if n.strip())
    for name in names:
        # The same rules as TENANT_DATABASES' names: checked by parsing one.
        try:
            parse_tenant_databases(f"{name}=postgresql://localhost/{name}")
        except ValueError as exc:
            raise ValueError(f"KIT_PLACEMENTS: {exc}") from None
        if name in taken or name == SHARED or names.count(name) > 1:
            raise ValueError(f"KIT_PLACEMENTS: placement {name} is named twice")
    return names


def read_config(environ: Mapping[str, str]) -> RunConfig:
    """Validate the settings `make run` itself uses; the services validate the rest."""
    redis_url = environ.get("REDIS_URL", "").strip() or None
    if redis_url and not redis_url.startswith(("redis://", "rediss://", "unix://")):
        raise ConfigError("kit: invalid setting REDIS_URL: not a redis:// URL")
    try:
        tenant_databases = parse_tenant_databases(environ.get("TENANT_DATABASES"))
        kit_placements = _kit_placements(environ.get("KIT_PLACEMENTS", ""), tenant_databases)
    except ValueError as exc:
        name = "KIT_PLACEMENTS" if str(exc).startswith("KIT_PLACEMENTS") else "TENANT_DATABASES"
        reason = str(exc).removeprefix(name + ": ")
        raise ConfigError(f"kit: invalid setting {name}: {reason}") from None
    if kit_placements and environ.get("DATABASE_URL", "").strip():
        raise ConfigError(
            "kit: invalid setting KIT_PLACEMENTS: make run creates them only on its own "
            "PostgreSQL; with DATABASE_URL, name them in TENANT_DATABASES"
        )
    config = RunConfig(
        data_dir=Path(environ.get("KIT_DATA_DIR", "").strip() or ".data"),
        gateway_port=_port(environ, "GATEWAY_PORT", 8000),
        users_port=_port(environ, "USERS_PORT", 8001),
        database_url=_postgres_url(environ, "DATABASE_URL"),
        redis_url=redis_url,
        app_database_url=_postgres_url(environ, "APP_DATABASE_URL"),
        environ=environ,
        tenant_databases=tenant_databases,
        kit_placements=kit_placements,
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
