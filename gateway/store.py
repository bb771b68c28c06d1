"""The gateway's tables in PostgreSQL: tenant and key lookups, and the admin changes.

Synchronous SQLAlchemy Core; the async gateway calls it through a worker thread.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import partial
from typing import Any, TypeVar

import anyio
from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Engine,
    Integer,
    LargeBinary,
    MetaData,
    Table,
    Text,
    create_engine,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from gateway.apikeys import display_prefix, generate_key, key_digest
from gateway.errors import DependencyDown
from services.tenancy.dburl import to_psycopg2
from services.tenancy.placements import SHARED, signed_placement

# Short on purpose: a dead or stuck PostgreSQL must turn into a 503 within the SPEC's 5 s.
CONNECT_TIMEOUT_SECONDS = 2
STATEMENT_TIMEOUT_MS = 2000
# Whatever the driver does (a half-open TCP connection ignores both timeouts above), the
# request stops waiting after this; the worker thread finishes or fails on its own.
CALL_DEADLINE_SECONDS = 3.0

T = TypeVar("T")

metadata = MetaData()
tenants = Table(
    "tenants",
    metadata,
    Column("id", BigInteger, primary_key=True),
    Column("name", Text, nullable=False),
    Column("slug", Text, nullable=False),
    Column("status", Text, nullable=False),
    Column("rate_limit_per_second", Integer),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("max_in_flight", Integer),
    Column("statement_timeout_ms", Integer),
    Column("placement", Text, nullable=False),
    Column("placement_epoch", BigInteger, nullable=False),
)
api_keys = Table(
    "api_keys",
    metadata,
    Column("id", BigInteger, primary_key=True),
    Column("tenant_id", BigInteger, nullable=False),
    Column("prefix", Text, nullable=False),
    Column("key_hash", LargeBinary, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("revoked_at", DateTime(timezone=True)),
)


class TenantNotFound(Exception):
    """No tenant has this id."""


class TenantPendingDeletion(Exception):
    """The tenant is pending deletion: only restore (or purge) may change it."""


class KeyNotFound(Exception):
    """The tenant holds no active key with this id."""


class DuplicateTenant(Exception):
    """Another tenant already has this name or slug."""

    def __init__(self, field: str) -> None:
        super().__init__(f"a tenant with this {field} already exists")
        self.field = field


@dataclass(frozen=True, slots=True)
class TenantRecord:
    id: int
    name: str
    slug: str
    status: str
    rate_limit_per_second: int | None
    created_at: dt.datetime
    # Defaults: a record cached in Redis by an older gateway lacks them (null = the default).
    max_in_flight: int | None = None
    statement_timeout_ms: int | None = None
    placement: str = SHARED
    placement_epoch: int = 0

    @property
    def active(self) -> bool:
        return self.status == "active"

    @property
    def signed_fields(self) -> dict[str, str | int]:
        """What the services must know of this tenant, signed into the forwarded context."""
        fields = signed_placement(self.placement, self.placement_epoch)
        if self.statement_timeout_ms is not None:
            fields["statement_timeout_ms"] = self.statement_timeout_ms
        return fields

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (the Redis cache and the admin API share it)."""
        return {**asdict(self), "created_at": self.created_at.isoformat()}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TenantRecord:
        """The inverse of to_json."""
        return cls(**{**data, "created_at": dt.datetime.fromisoformat(data["created_at"])})


@dataclass(frozen=True, slots=True)
class KeyRecord:
    id: int
    tenant_id: int
    prefix: str
    created_at: dt.datetime


def make_engine(database_url: str, *, application_name: str = "gateway") -> Engine:
    """An engine whose connections and statements give up in about two seconds."""
    return create_engine(
        to_psycopg2(database_url, application_name=application_name),
        pool_size=5,
        max_overflow=10,
        pool_timeout=CONNECT_TIMEOUT_SECONDS,
        pool_pre_ping=True,
        connect_args={
            "connect_timeout": CONNECT_TIMEOUT_SECONDS,
            "options": f"-c statement_timeout={STATEMENT_TIMEOUT_MS}",
        },
    )


async def run_db(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run a blocking store function in a worker thread; DependencyDown (503) on failure."""
    try:
        with anyio.fail_after(CALL_DEADLINE_SECONDS):
            return await anyio.to_thread.run_sync(
                partial(fn, *args, **kwargs), abandon_on_cancel=True
            )
    except (TimeoutError, SQLAlchemyError) as exc:
        if isinstance(exc, IntegrityError):
            raise
        raise DependencyDown("PostgreSQL") from exc


def _tenant(row: Any) -> TenantRecord:
    return TenantRecord(**row._mapping)


def _key(row: Any) -> KeyRecord:
    return KeyRecord(
        id=row.id, tenant_id=row.tenant_id, prefix=row.prefix, created_at=row.created_at
    )


def ping(engine: Engine) -> None:
    """Raise unless PostgreSQL answers."""
    with engine.connect() as conn:
        conn.execute(select(1))


def find_tenant(engine: Engine, tenant_id: int) -> TenantRecord | None:
    """The tenant with this id, or None."""
    with engine.connect() as conn:
        row = conn.execute(select(tenants).where(tenants.c.id == tenant_id)).first()
    return _tenant(row) if row else None


def find_tenant_id_by_slug(engine: Engine, slug: str) -> int | None:
    """The id of the tenant with this slug, or None."""
    with engine.connect() as conn:
        return conn.execute(select(tenants.c.id).where(tenants.c.slug == slug)).scalar()


def find_active_key(engine: Engine, digest: bytes) -> KeyRecord | None:
    """The unrevoked key with this SHA-256 digest, or None."""
    query = select(api_keys).where(api_keys.c.key_hash == digest, api_keys.c.revoked_at.is_(None))
    with engine.connect() as conn:
        row = conn.execute(query).first()
    return _key(row) if row else None


def _duplicate(exc: IntegrityError) -> DuplicateTenant | None:
    constraint = getattr(getattr(exc.orig, "diag", None), "constraint_name", None)
    if constraint in ("tenants_name_key", "tenants_slug_key"):
        return DuplicateTenant(constraint.split("_")[1])
    return None


def _insert_key(conn: Any, tenant_id: int) -> tuple[KeyRecord, str]:
    key = generate_key()
    row = conn.execute(
        insert(api_keys)
        .values(tenant_id=tenant_id, prefix=display_prefix(key), key_hash=key_digest(key))
        .returning(api_keys)
    ).one()
    return _key(row), key


def create_tenant(
    engine: Engine,
    *,
    name: str,
    slug: str | None,
    rate_limit_per_second: int | None,
    max_in_flight: int | None = None,
    statement_timeout_ms: int | None = None,
    placement: str = SHARED,
    place: Callable[[int], None] | None = None,
) -> tuple[TenantRecord, KeyRecord, str]:
    """Insert a tenant and its first key; the key in clear is returned this once only.

    `place(id)` runs before the commit (the parent row in a dedicated placement): if it
    fails, the tenant is not created.
    """
    values: dict[str, Any] = {
        "name": name,
        "rate_limit_per_second": rate_limit_per_second,
        "max_in_flight": max_in_flight,
        "statement_timeout_ms": statement_timeout_ms,
        "placement": placement,
    }
    if slug:
        values["slug"] = slug
    try:
        with engine.begin() as conn:
            tenant = _tenant(
                conn.execute(insert(tenants).values(**values).returning(tenants)).one()
            )
            key, clear = _insert_key(conn, tenant.id)
            if place is not None:
                place(tenant.id)
    except IntegrityError as exc:
        raise (_duplicate(exc) or exc) from exc
    return tenant, key, clear


def list_tenants(engine: Engine) -> list[TenantRecord]:
    """Every tenant, oldest first."""
    with engine.connect() as conn:
        return [_tenant(r) for r in conn.execute(select(tenants).order_by(tenants.c.id))]


def get_tenant(engine: Engine, tenant_id: int) -> TenantRecord:
    """The tenant, or TenantNotFound."""
    tenant = find_tenant(engine, tenant_id)
    if tenant is None:
        raise TenantNotFound(tenant_id)
    return tenant


def update_tenant(engine: Engine, tenant_id: int, changes: dict[str, Any]) -> TenantRecord:
    """Apply name/status/limit changes; TenantNotFound or DuplicateTenant."""
    if not changes:
        return get_tenant(engine, tenant_id)
    try:
        with engine.begin() as conn:
            row = conn.execute(
                update(tenants)
                .where(tenants.c.id == tenant_id, tenants.c.status != "pending_deletion")
                .values(**changes)
                .returning(tenants)
            ).first()
    except IntegrityError as exc:
        raise (_duplicate(exc) or exc) from exc
    if row is None:
        # PATCH {"status": "active"} must not be a way around restore's rules.
        if find_tenant(engine, tenant_id) is not None:
            raise TenantPendingDeletion(tenant_id)
        raise TenantNotFound(tenant_id)
    return _tenant(row)


def create_key(engine: Engine, tenant_id: int) -> tuple[KeyRecord, str]:
    """A new key for the tenant; the key in clear is returned this once only."""
    with engine.begin() as conn:
        exists = conn.execute(
            select(tenants.c.id).where(tenants.c.id == tenant_id).with_for_update(key_share=True)
        ).first()
        if exists is None:
            raise TenantNotFound(tenant_id)
        return _insert_key(conn, tenant_id)


def revoke_key(engine: Engine, tenant_id: int, key_id: int) -> bytes:
    """Mark the key revoked; returns its digest. KeyNotFound when unknown or already revoked."""
    with engine.begin() as conn:
        digest = conn.execute(
            update(api_keys)
            .where(
                api_keys.c.id == key_id,
                api_keys.c.tenant_id == tenant_id,
                api_keys.c.revoked_at.is_(None),
            )
            .values(revoked_at=func.now())
            .returning(api_keys.c.key_hash)
        ).scalar()
    if digest is None:
        raise KeyNotFound(key_id)
    return bytes(digest)
