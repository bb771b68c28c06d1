"""What a tenant-aware service holds while it runs: engine, signing key, nonce store, logger."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import URL

from services.tenancy.asyncread import CostHook, TenantReader
from services.tenancy.dburl import plain, to_psycopg2
from services.tenancy.fairshare import TenantShares
from services.tenancy.fencing import EpochFence, UnknownPlacement
from services.tenancy.placements import SHARED
from services.tenancy.readpool import ReadPool
from services.tenancy.replay import NonceStore
from services.tenancy.session import (
    SeparateSettingTenantSession,
    TenantSession,
    install_engine_hooks,
    open_tenant_session,
)
from services.tenancy.tenant_setting import TenantSettingChoice

# A dead or unreachable PostgreSQL must cost a request seconds, not minutes: the gateway
# promises an answer within 5 s, so each wait below stays well under that.
CONNECT_TIMEOUT_SECONDS = 2
POOL_TIMEOUT_SECONDS = 3
STATEMENT_TIMEOUT_MS = 4000
# 20 connections at most, as before (10 + 10 overflow), but all kept: an overflow connection
# is closed when it is returned, so past 10 requests at once every request paid a new
# PostgreSQL connection (a backend fork and SCRAM): a quarter of the service's time in the
# issue 10 profile. Requests beyond 20 wait up to POOL_TIMEOUT_SECONDS for one, then 503.
POOL_SIZE = 20
# The most connections one service process opens; each tenant's share is a part of it.
POOL_CAPACITY = POOL_SIZE


def create_tenant_engine(url: str | URL, *, application_name: str) -> Engine:
    """A psycopg2 engine for the services' role, with the per-transaction tenant hook installed."""
    engine = create_engine(
        to_psycopg2(url, application_name=application_name),
        # No pre-ping: it was a third round trip per request (SELECT 1 before the query and
        # the COMMIT), 15 % of the service's time in the profile. A connection that died
        # (PostgreSQL restarted) fails its request with the usual fast 503, and that error
        # invalidates the whole pool, so the next requests reconnect.
        pool_pre_ping=False,
        pool_size=POOL_SIZE,
        max_overflow=0,
        pool_timeout=POOL_TIMEOUT_SECONDS,
        connect_args={
            "connect_timeout": CONNECT_TIMEOUT_SECONDS,
            "options": f"-c statement_timeout={STATEMENT_TIMEOUT_MS}",
        },
    )
    install_engine_hooks(engine)
    return engine


def create_read_pool(url: str | URL, *, application_name: str) -> ReadPool:
    """The hot reads' psycopg 3 pool (services/tenancy/asyncread.py), set up as the engine.

    A pool of its own, POOL_SIZE too: a process may hold up to twice POOL_SIZE connections,
    the writes' and the reads', each opened only as far as concurrency needs.
    """
    return ReadPool(
        plain(to_psycopg2(url, application_name=application_name)),
        size=POOL_SIZE,
        timeout=POOL_TIMEOUT_SECONDS,
        connect_timeout=CONNECT_TIMEOUT_SECONDS,
        options=f"-c statement_timeout={STATEMENT_TIMEOUT_MS}",
        # No server-side prepared statements: PgBouncer in transaction mode
        # (max_prepared_statements = 0 in deploy/pgbouncer) cannot follow them. The hot
        # reads bind on the client and never prepare; this keeps any other use as safe.
        prepare_threshold=None,
    )


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
    # The key derived for this service's destination, and that destination (its route prefix).
    signing_key: bytes
    destination: str
    nonces: NonceStore
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("tenancy"))
    # Fused unless the start-up choice (TENANT_SETTING, Citus detection) said otherwise.
    tenant_setting: TenantSettingChoice = field(
        default_factory=lambda: TenantSettingChoice(mode="fused", citus=False, form="fused")
    )
    # Off unless the app factory sets it from the settings (TENANT_FAIRNESS).
    shares: TenantShares = field(default_factory=lambda: TenantShares(limit=None, wait_seconds=0.0))
    statement_timeout_ms: int = STATEMENT_TIMEOUT_MS
    # The engines of the TENANT_DATABASES placements (`shared` is `engine`), and the fence.
    placements: dict[str, Engine] = field(default_factory=dict)
    fence: EpochFence = field(default_factory=EpochFence)
    # The hot reads' pools, per placement (`shared` included), their cost hook and tracer.
    read_pools: dict[str, ReadPool] = field(default_factory=dict)
    read_cost: CostHook | None = None
    tracer: Any = None

    def engine_for(self, placement: str) -> Engine:
        """The engine of `placement`; UnknownPlacement when this service has none."""
        if placement == SHARED:
            return self.engine
        engine = self.placements.get(placement)
        if engine is None:
            raise UnknownPlacement(placement)
        return engine

    def session(
        self, tenant_id: int, *, statement_timeout_ms: int | None = None, placement: str = SHARED
    ) -> TenantSession | SeparateSettingTenantSession:
        """A session whose every transaction runs as `tenant_id`, in the ORM and in PostgreSQL.

        Its statements are cancelled after `statement_timeout_ms` (the tenant's own limit),
        else after the service's default; they go to `placement`'s database.
        """
        return open_tenant_session(
            self.engine_for(placement),
            tenant_id=tenant_id,
            separate=self.tenant_setting.form == "separate",
            statement_timeout_ms=statement_timeout_ms or self.statement_timeout_ms,
        )

    def reader(
        self, tenant_id: int, *, statement_timeout_ms: int | None = None, placement: str = SHARED
    ) -> TenantReader:
        """As `session`, for the hot reads on the event loop (services/tenancy/asyncread.py)."""
        pool = self.read_pools.get(placement)
        if pool is None:
            raise UnknownPlacement(placement)
        return TenantReader(
            pool,
            tenant_id=tenant_id,
            statement_timeout_ms=statement_timeout_ms or self.statement_timeout_ms,
            separate=self.tenant_setting.form == "separate",
            on_cost=self.read_cost,
            tracer=self.tracer,
        )
