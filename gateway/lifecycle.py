"""Tenant lifecycle (SPEC §4, docs/lifecycle.md): pending deletion, restore, purge, certificate.

States: active / suspended -> pending_deletion (refused everywhere, rows and keys kept)
-> purged (tenant row gone, a signed certificate in tenant_deletions). The gateway's role
changes the tenants table; tenant tables are emptied as the services' role (tenantdata).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, text

from gateway import placedlife
from gateway.placements import Placements
from gateway.store import TenantNotFound, TenantRecord, api_keys, find_tenant, tenants
from gateway.tenantdata import Progress
from services.tenancy.placements import SHARED

log = logging.getLogger("gateway.lifecycle")
_TENANT_COLUMNS = ", ".join(c.name for c in tenants.columns)


class NotPendingDeletion(Exception):
    """Restore asked for a tenant that is not pending deletion (or whose purge began)."""


class PurgeRunning(Exception):
    """Another process is purging this tenant right now."""


class PurgeIncomplete(Exception):
    """The verification scan still found rows of the tenant: no certificate is issued."""


@dataclass(frozen=True, slots=True)
class Deleted:
    tenant: TenantRecord
    key_digests: list[bytes]


def _record(row: Any) -> TenantRecord:
    return TenantRecord(**{c.name: row._mapping[c.name] for c in tenants.columns})


def _digests(conn: Connection, tenant_id: int) -> list[bytes]:
    query = text(f"SELECT key_hash FROM {api_keys.name} WHERE tenant_id = :t")
    return [bytes(d) for d in conn.execute(query, {"t": tenant_id}).scalars()]


def request_deletion(engine: Engine, tenant_id: int) -> Deleted:
    """Mark the tenant pending_deletion (idempotent); its rows and keys stay."""
    with engine.begin() as conn:
        row = conn.execute(
            text(
                f"UPDATE tenants SET status = 'pending_deletion', "
                f"deletion_requested_at = coalesce(deletion_requested_at, now()) "
                f"WHERE id = :t RETURNING {_TENANT_COLUMNS}"
            ),
            {"t": tenant_id},
        ).first()
        if row is None:
            raise TenantNotFound(tenant_id)
        return Deleted(_record(row), _digests(conn, tenant_id))


def restore(engine: Engine, tenant_id: int) -> TenantRecord:
    """Back to active with every row and key, unless a purge has begun (NotPendingDeletion)."""
    with engine.begin() as conn:
        # The row lock orders this against a purge's claim (which takes the same lock).
        status = conn.execute(
            text("SELECT status FROM tenants WHERE id = :t FOR UPDATE"), {"t": tenant_id}
        ).scalar()
        if status is None:
            raise TenantNotFound(tenant_id)
        claimed = conn.execute(
            text("SELECT 1 FROM tenant_deletions WHERE tenant_id = :t"), {"t": tenant_id}
        ).first()
        if status != "pending_deletion" or claimed:
            raise NotPendingDeletion(tenant_id)
        row = conn.execute(
            text(
                "UPDATE tenants SET status = 'active', deletion_requested_at = NULL "
                f"WHERE id = :t RETURNING {_TENANT_COLUMNS}"
            ),
            {"t": tenant_id},
        ).one()
    return _record(row)


def due_for_purge(engine: Engine, grace_seconds: int) -> list[int]:
    """Tenants whose grace period is over."""
    with engine.connect() as conn:
        return list(
            conn.execute(
                text(
                    "SELECT id FROM tenants WHERE status = 'pending_deletion' AND "
                    "deletion_requested_at + make_interval(secs => :g) <= now() ORDER BY id"
                ),
                {"g": grace_seconds},
            ).scalars()
        )


def certificate(engine: Engine, tenant_id: int) -> dict[str, Any] | None:
    """The signed certificate of the tenant's purge, or None before one."""
    with engine.connect() as conn:
        return conn.execute(
            text("SELECT certificate FROM tenant_deletions WHERE tenant_id = :t"),
            {"t": tenant_id},
        ).scalar()


def sign(body: dict[str, Any], key: bytes) -> str:
    """HMAC-SHA256 (hex) of the certificate's canonical JSON (sorted keys, no spaces)."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    return hmac.new(key, canonical, hashlib.sha256).hexdigest()


def verify(cert: dict[str, Any], key: bytes) -> bool:
    """Whether `cert` (as served) carries a valid signature under `key`."""
    body = {k: v for k, v in cert.items() if k != "signature"}
    return hmac.compare_digest(sign(body, key), str(cert.get("signature", "")))


def purge(
    engine: Engine,
    app_engines: Mapping[str, Engine],
    tenant_id: int,
    key: bytes,
    progress: Progress | None = None,
    placements: Placements | None = None,
) -> tuple[dict[str, Any], Deleted]:
    """Purge a pending_deletion tenant now and return its certificate (at most once).

    `app_engines` is the services' role in every placement (`shared` first), `placements`
    the gateway role's (for the parent rows in dedicated ones): the purge covers them all.
    An advisory lock keeps a second replica (or the CLI) off the same tenant; the
    tenant_deletions row makes an interrupted purge resumable with its original counts.
    """
    placements = placements or Placements({})
    # A transaction-scoped lock on a connection held open (idle, no snapshot kept) for the
    # whole purge: unlike a session lock it is also safe behind PgBouncer's transaction mode.
    with engine.connect() as lock, lock.begin():
        got = lock.execute(
            text("SELECT pg_try_advisory_xact_lock(hashtextextended('tenantkit-purge', :t))"),
            {"t": tenant_id},
        ).scalar()
        if not got:
            raise PurgeRunning(tenant_id)
        return _purge_locked(engine, app_engines, placements, tenant_id, key, progress)


def _claim(
    engine: Engine, app_engines: Mapping[str, Engine], tenant_id: int
) -> placedlife.Counts | None:
    """Record the purge's start (counts before) under the tenant's row lock; None if done."""
    counts = placedlife.count_everywhere(app_engines, tenant_id)
    with engine.begin() as conn:
        status = conn.execute(
            text("SELECT status FROM tenants WHERE id = :t FOR UPDATE"), {"t": tenant_id}
        ).scalar()
        if status is None:
            return None
        if status != "pending_deletion":
            raise NotPendingDeletion(tenant_id)
        # Its rows are on their way between databases: counts and deletes would miss some.
        if placedlife.move_running(conn, tenant_id):
            raise placedlife.MoveInProgress(tenant_id)
        conn.execute(
            text(
                "INSERT INTO tenant_deletions (tenant_id, slug, counts_before) "
                "SELECT id, slug, CAST(:c AS jsonb) FROM tenants WHERE id = :t "
                "ON CONFLICT (tenant_id) DO NOTHING"
            ),
            {"t": tenant_id, "c": json.dumps(counts)},
        )
        before = conn.execute(
            text("SELECT counts_before FROM tenant_deletions WHERE tenant_id = :t"),
            {"t": tenant_id},
        ).scalar_one()
    return placedlife.as_counts(before)


def _purge_locked(
    engine: Engine,
    app_engines: Mapping[str, Engine],
    placements: Placements,
    tenant_id: int,
    key: bytes,
    progress: Progress | None,
) -> tuple[dict[str, Any], Deleted]:
    # Stable from here: a pending_deletion tenant cannot begin a move (mover.begin).
    found = find_tenant(engine, tenant_id)
    if found is not None:  # a placement this process cannot reach: refused before the claim
        placedlife.engine_of(app_engines, found.placement)
    before = _claim(engine, app_engines, tenant_id)
    if before is None or found is None:
        done = certificate(engine, tenant_id)
        if done is None:
            raise TenantNotFound(tenant_id)
        return done, Deleted(_gone(tenant_id, done), [])
    deleted = placedlife.delete_everywhere(app_engines, found.placement, tenant_id, progress)
    # What an operator checks a large purge against: no transaction held locks for long.
    log.info(
        "tenant %s: %d rows deleted in %d transactions, the longest %.3f s",
        tenant_id,
        deleted.rows,
        deleted.transactions,
        deleted.longest_seconds,
    )
    after = placedlife.count_everywhere(app_engines, tenant_id)
    left = {f"{p}:{t}": n for p, counts in after.items() for t, n in counts.items() if n}
    if left:
        raise PurgeIncomplete(f"rows left after the purge: {left}")
    lsn = placedlife.drop_parent_rows(placements, tenant_id)
    with engine.begin() as conn:
        digests = _digests(conn, tenant_id)
        # api_keys and the id counters go with the row (ON DELETE CASCADE).
        row = conn.execute(
            text(f"DELETE FROM tenants WHERE id = :t RETURNING {_TENANT_COLUMNS}"),
            {"t": tenant_id},
        ).one()
        facts = conn.execute(
            text(
                "SELECT started_at, now() AS finished_at, pg_current_wal_lsn()::text AS lsn, "
                "(SELECT version_num FROM alembic_version LIMIT 1) AS revision "
                "FROM tenant_deletions WHERE tenant_id = :t"
            ),
            {"t": tenant_id},
        ).one()
        lsn[SHARED] = facts.lsn
        body = {
            "tenant_id": tenant_id,
            "slug": row.slug,
            **placedlife.certified(row.placement, before, after, lsn),
            "started_at": _iso(facts.started_at),
            "finished_at": _iso(facts.finished_at),
            "schema_revision": facts.revision,
            "algorithm": "HMAC-SHA256",
        }
        cert = {**body, "signature": sign(body, key)}
        conn.execute(
            text(
                "UPDATE tenant_deletions SET finished_at = :f, certificate = CAST(:c AS jsonb) "
                "WHERE tenant_id = :t"
            ),
            {"t": tenant_id, "f": facts.finished_at, "c": json.dumps(cert)},
        )
    if progress:
        progress(f"tenant {tenant_id} purged")
    return cert, Deleted(_record(row), digests)


def _iso(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).isoformat()


def _gone(tenant_id: int, cert: dict[str, Any]) -> TenantRecord:
    return TenantRecord(
        id=tenant_id,
        name="",
        slug=str(cert.get("slug", "")),
        status="pending_deletion",
        rate_limit_per_second=None,
        created_at=dt.datetime.now(dt.UTC),
    )
