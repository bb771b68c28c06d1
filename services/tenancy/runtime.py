"""What a tenant-aware service holds while it runs: the engine, the secret, the logger."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import URL

from services.tenancy.dburl import to_psycopg2
from services.tenancy.fairshare import TenantShares
from services.tenancy.session import TenantSession, install_engine_hooks, open_tenant_session

# A dead or unreachable PostgreSQL must cost a request seconds, not minutes: the gateway
# promises an answer within 5 s, so each wait below stays well under that.
CONNECT_TIMEOUT_SECONDS = 2
POOL_TIMEOUT_SECONDS = 3
STATEMENT_TIMEOUT_MS = 4000
POOL_SIZE = 10
MAX_OVERFLOW = 10
# The most connections one service process opens; each tenant's share is a part of it.
POOL_CAPACITY = POOL_SIZE + MAX_OVERFLOW


def create_tenant_engine(url: str | URL, *, application_name: str) -> Engine:
    """A psycopg2 engine for the services' role, with the per-transaction tenant hook installed."""
    engine = create_engine(
        to_psycopg2(url, application_name=application_name),
        pool_pre_ping=True,
        pool_size=POOL_SIZE,
        max_overflow=MAX_OVERFLOW,
        pool_timeout=POOL_TIMEOUT_SECONDS,
        connect_args={
            "connect_timeout": CONNECT_TIMEOUT_SECONDS,
            "options": f"-c statement_timeout={STATEMENT_TIMEOUT_MS}",
        },
    )
    install_engine_hooks(engine)
    return engine


def database_ready(engine: Engine) -> bool:
    """True when PostgreSQL answers a trivial query with the service's own role."""
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception:
        return False
    return True


@dataclass(slots=True)
class Tenancy:
    """Lifespan state shared by every request of a tenant-aware service."""

    engine: Engine
    signing_secret: str
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("tenancy"))
    # Off unless the app factory sets it from the settings (TENANT_FAIRNESS).
    shares: TenantShares = field(default_factory=lambda: TenantShares(limit=None, wait_seconds=0.0))
    statement_timeout_ms: int = STATEMENT_TIMEOUT_MS

    def session(self, tenant_id: int, *, statement_timeout_ms: int | None = None) -> TenantSession:
        """A session whose every transaction runs as `tenant_id`, in the ORM and in PostgreSQL.

        Its statements are cancelled after `statement_timeout_ms` (the tenant's own limit),
        else after the service's default.
        """
        return open_tenant_session(
            self.engine,
            tenant_id=tenant_id,
            statement_timeout_ms=statement_timeout_ms or self.statement_timeout_ms,
        )
