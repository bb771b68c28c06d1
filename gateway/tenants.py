"""Tenant and key lookups through two cache levels (process, Redis) in front of PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import Engine

from gateway import store
from gateway.breaker import RedisDown, RedisLink
from gateway.cache import CacheTTLs, LocalCache
from gateway.cacheseal import Sealer, Unverified
from gateway.errors import GatewayError
from gateway.metrics import Metrics
from gateway.store import TenantRecord, run_db

log = logging.getLogger("gateway.cache")


def tenant_redis_key(tenant_id: int) -> str:
    return f"tk:tenant:id:{tenant_id}"


def slug_redis_key(slug: str) -> str:
    return f"tk:tenant:slug:{slug}"


def apikey_redis_key(digest_hex: str) -> str:
    return f"tk:apikey:{digest_hex}"


class TenantDirectory:
    """Answers "who is tenant N / slug S / key K" at zero database queries in steady state."""

    def __init__(
        self,
        *,
        engine: Engine,
        redis: RedisLink,
        metrics: Metrics,
        ttl_seconds: float,
        sealer: Sealer,
    ) -> None:
        self._engine = engine
        self._redis = redis
        self._metrics = metrics
        self._sealer = sealer
        self._ttls = CacheTTLs.from_total(ttl_seconds)
        self.local = LocalCache()
        # One database query per key at a time, however many requests miss together.
        self._inflight: dict[tuple[str, str], asyncio.Future[Any]] = {}

    async def tenant(self, tenant_id: int) -> TenantRecord | None:
        """The tenant, or None when it does not exist."""
        data = await self._lookup(
            ("tenant", str(tenant_id)),
            tenant_redis_key(tenant_id),
            lambda: self._load(store.find_tenant, tenant_id, encode=TenantRecord.to_json),
        )
        return TenantRecord.from_json(data) if data is not None else None

    async def tenant_id_for_slug(
        self, slug: str, *, before_query: Callable[[], None] | None = None
    ) -> int | None:
        """The id of the tenant with this slug, or None (`before_query` as for key_owner)."""

        async def load() -> Any:
            if before_query is not None:
                before_query()
            return await self._load(store.find_tenant_id_by_slug, slug, encode=int)

        data = await self._lookup(("slug", slug), slug_redis_key(slug), load)
        return int(data) if data is not None else None

    async def key_owner(
        self, digest: bytes, *, before_query: Callable[[], None] | None = None
    ) -> int | None:
        """The tenant id of the unrevoked key with this digest, or None.

        `before_query` runs only when neither cache knows the key; it may refuse (raise).
        """
        digest_hex = digest.hex()

        async def load() -> Any:
            if before_query is not None:
                before_query()
            return await self._load(
                store.find_active_key,
                digest,
                encode=lambda k: {"key_id": k.id, "tenant_id": k.tenant_id},
            )

        data = await self._lookup(("apikey", digest_hex), apikey_redis_key(digest_hex), load)
        return int(data["tenant_id"]) if data is not None else None

    def forget(self, message: str) -> None:
        """Apply one invalidation message (`tenant:<id>` or `apikey:<sha256 hex>`)."""
        kind, _, ident = message.partition(":")
        if kind == "tenant":
            self.local.drop(("tenant", ident))
            # The slug entries pointing at it, and every "no such slug" (it may be new now).
            self.local.drop_where("slug", lambda v: v is None or str(v) == ident)
        elif kind == "apikey":
            self.local.drop(("apikey", ident))

    async def _load(self, fn: Callable[..., Any], arg: Any, *, encode: Callable[[Any], Any]) -> Any:
        self._metrics.db_lookups.inc()
        found = await run_db(fn, self._engine, arg)
        return None if found is None else encode(found)

    async def _lookup(
        self, local_key: tuple[str, str], redis_key: str, load: Callable[[], Awaitable[Any]]
    ) -> Any:
        found, value = self.local.get(local_key)
        if found:
            self._metrics.cache.labels(result="hit_local").inc()
            return value
        task = self._inflight.get(local_key)
        if task is None:
            # A task of its own, not the caller's: a client hanging up mid-lookup must not
            # cancel the lookup that other requests for the same key are waiting on.
            task = asyncio.ensure_future(self._fill(local_key, redis_key, load))
            self._inflight[local_key] = task
            task.add_done_callback(lambda done: self._settled(local_key, done))
        return await asyncio.shield(task)

    def _settled(self, local_key: tuple[str, str], task: asyncio.Future[Any]) -> None:
        self._inflight.pop(local_key, None)
        if not task.cancelled():
            # Mark the exception retrieved: when every waiter left, asyncio must not warn.
            task.exception()

    async def _fill(
        self, local_key: tuple[str, str], redis_key: str, load: Callable[[], Awaitable[Any]]
    ) -> Any:
        generation = self.local.generation
        try:
            raw = await self._redis.call(lambda r: r.get(redis_key))
        except RedisDown:
            raw = None
        if raw is not None:
            try:
                # decode_responses=True: a str; anything else is not ours either.
                value = self._sealer.open(redis_key, raw if isinstance(raw, str) else "")
            except Unverified as exc:
                # Forged, moved or expired: a miss, and the write-back below replaces it.
                self._metrics.cache_rejected.labels(reason=exc.reason).inc()
                log.warning("ignored an unverifiable cache entry %s (%s)", redis_key, exc.reason)
            else:
                self._metrics.cache.labels(result="hit_redis").inc()
                ttl = self._ttls.local if value is not None else self._ttls.negative_local
                self.local.put(local_key, value, ttl=ttl, generation=generation)
                return value
        self._metrics.cache.labels(result="miss").inc()
        value = await load()
        positive = value is not None
        self.local.put(
            local_key,
            value,
            ttl=self._ttls.local if positive else self._ttls.negative_local,
            generation=generation,
        )
        if generation == self.local.generation:
            redis_ttl = self._ttls.redis if positive else self._ttls.negative_redis
            sealed = self._sealer.seal(redis_key, value, ttl_seconds=redis_ttl)
            with contextlib.suppress(RedisDown):
                await self._redis.call(
                    lambda r: r.set(redis_key, sealed, px=max(1, int(redis_ttl * 1000)))
                )
        return value


async def validate_tenant(directory: TenantDirectory, tenant_id: int) -> TenantRecord:
    """The tenant a request will act for: 404 when it does not exist (or is being deleted),
    403 when suspended."""
    tenant = await directory.tenant(tenant_id)
    # A tenant pending deletion answers as if gone (SPEC §5): its data is only kept, not served.
    if tenant is None or tenant.status == "pending_deletion":
        raise GatewayError(404, "tenant not found")
    if not tenant.active:
        raise GatewayError(403, "tenant is suspended")
    return tenant
