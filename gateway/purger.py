"""The lifecycle's moving parts in the gateway: purge (now or when the grace ends), with Redis.

Every replica runs the purger loop; `lifecycle.purge` takes a PostgreSQL advisory lock per
tenant and records each purge, so a tenant is purged at most once however many run.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from dataclasses import dataclass, field
from typing import Any

import anyio
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from gateway import invalidation, lifecycle, placedlife, usage
from gateway.invalidation import Invalidator
from gateway.placements import Placements
from gateway.ratelimit import rate_limit_key
from services.tenancy.placements import SHARED

log = logging.getLogger("gateway.lifecycle")
# Checked every quarter of the grace period, between 1 s and a minute: a purge is due at
# most a minute (or a quarter of a short test grace) late.
MIN_INTERVAL_SECONDS, MAX_INTERVAL_SECONDS = 1.0, 60.0


@dataclass(slots=True)
class Lifecycle:
    engine: Engine
    # The services' role in every placement, `shared` first ({} when not configured).
    app_engines: dict[str, Engine]
    key: bytes
    grace_seconds: int
    # The gateway role in the dedicated placements (their tenants' parent rows).
    placements: Placements = field(default_factory=lambda: Placements({}))

    @property
    def available(self) -> bool:
        """Whether tenant tables can be reached at all (APP_DATABASE_URL or DATABASE_URL)."""
        return bool(self.app_engines)

    def require_app_engine(self, placement: str = SHARED) -> Engine:
        """The services' role's engine in `placement`; LifecycleUnavailable when not configured."""
        if not self.app_engines:
            raise LifecycleUnavailable("APP_DATABASE_URL is not set: no access to tenant tables")
        return placedlife.engine_of(self.app_engines, placement)


class LifecycleUnavailable(Exception):
    """The gateway was given no way to reach tenant tables (answered 503)."""


def refusal_plan(deleted: lifecycle.Deleted) -> tuple[list[str], list[str]]:
    """What a deletion request invalidates: the tenant's cache entries (its data stays)."""
    t = deleted.tenant
    return invalidation.plan(tenant_id=t.id, slug=t.slug, key_digests=deleted.key_digests)


def redis_plan(deleted: lifecycle.Deleted) -> tuple[list[str], list[str]]:
    """Every Redis key of the tenant (cache entries, rate limit, usage minutes) and messages."""
    t = deleted.tenant
    keys, messages = invalidation.plan(tenant_id=t.id, slug=t.slug, key_digests=deleted.key_digests)
    # Usage hashes live TTL_SECONDS; every minute of that span is named (no SCAN needed).
    spent = usage.usage_keys(t.id, window_seconds=usage.TTL_SECONDS, now=time.time())
    return [*keys, rate_limit_key(t.id), *spent], messages


# The tenant's last requests may still be counted in a replica's memory: every replica flushes
# within this long, and that flush re-creates a usage hash the purge had dropped.
LATE_USAGE_SECONDS = usage.FLUSH_SECONDS + usage.FLUSH_WAIT_SECONDS


def late_usage_plan(deleted: lifecycle.Deleted) -> tuple[list[str], list[str]]:
    """The usage hashes of the last two minutes again, for after LATE_USAGE_SECONDS."""
    keys = usage.usage_keys(
        deleted.tenant.id, window_seconds=2 * usage.BUCKET_SECONDS, now=time.time()
    )
    return keys, []


async def purge_now(life: Lifecycle, invalidator: Invalidator, tenant_id: int) -> dict[str, Any]:
    """Purge the tenant (already pending_deletion) and drop its Redis keys everywhere."""
    life.require_app_engine()
    cert, deleted = await anyio.to_thread.run_sync(
        lambda: lifecycle.purge(
            life.engine, life.app_engines, tenant_id, life.key, placements=life.placements
        )
    )
    await invalidator.publish(*redis_plan(deleted))
    invalidator.publish_later(LATE_USAGE_SECONDS, *late_usage_plan(deleted))
    return cert


def interval(grace_seconds: int) -> float:
    """How often the purger looks for tenants past their grace."""
    return min(MAX_INTERVAL_SECONDS, max(MIN_INTERVAL_SECONDS, grace_seconds / 4))


async def run_purger(life: Lifecycle, invalidator: Invalidator) -> None:
    """Until cancelled: purge every tenant whose grace period is over."""
    if not life.available:
        log.warning("APP_DATABASE_URL is not set: tenants past their grace are not purged here")
        return
    while True:
        # Jitter: replicas started together do not all query at the same instant.
        await asyncio.sleep(interval(life.grace_seconds) * random.uniform(0.8, 1.2))  # noqa: S311
        try:
            due = await anyio.to_thread.run_sync(
                lifecycle.due_for_purge, life.engine, life.grace_seconds
            )
            for tenant_id in due:
                try:
                    await purge_now(life, invalidator, tenant_id)
                    log.info("tenant %s purged after its grace period", tenant_id)
                except (lifecycle.PurgeRunning, lifecycle.NotPendingDeletion):
                    continue  # another replica has it, or it was restored meanwhile
                except placedlife.MoveInProgress:
                    log.warning("tenant %s: purge waits for its move to finish", tenant_id)
        except (SQLAlchemyError, lifecycle.PurgeIncomplete, placedlife.PlacementUnavailable) as exc:
            log.warning("purger: %s", str(exc).splitlines()[0] if str(exc) else repr(exc))
