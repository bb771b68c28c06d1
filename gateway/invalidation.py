"""Cache invalidation across replicas: Redis pub/sub on `tk:invalidate`.

The writer (admin API or CLI) commits to PostgreSQL, deletes the Redis entries and
publishes; every gateway drops its in-process entries on the message.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Coroutine, Iterable
from typing import Any

from redis import Redis as SyncRedis
from redis.asyncio import Redis
from redis.exceptions import RedisError

from gateway.breaker import RedisDown, RedisLink
from gateway.hold import Holds
from gateway.tenants import TenantDirectory, apikey_redis_key, slug_redis_key, tenant_redis_key

CHANNEL = "tk:invalidate"
# A gateway that read PostgreSQL just before the commit may write the old value to Redis
# just after the first delete; deleting again a moment later closes that window.
SECOND_PASS_DELAY_SECONDS = 0.5
INVALIDATION_WAIT_SECONDS = 1.0
log = logging.getLogger("gateway.invalidation")


def plan(
    *, tenant_id: int, slug: str | None = None, key_digests: Iterable[bytes] = ()
) -> tuple[list[str], list[str]]:
    """(Redis keys to delete, messages to publish) for a change to a tenant or its keys."""
    keys = [tenant_redis_key(tenant_id)]
    messages = [f"tenant:{tenant_id}"]
    if slug:
        keys.append(slug_redis_key(slug))
    for digest in key_digests:
        keys.append(apikey_redis_key(digest.hex()))
        messages.append(f"apikey:{digest.hex()}")
    return keys, messages


def publish_sync(client: SyncRedis, keys: list[str], messages: list[str]) -> None:
    """The CLI's way: delete and publish in one round trip, then again 0.5 s later."""
    for attempt in range(2):
        if attempt:
            time.sleep(SECOND_PASS_DELAY_SECONDS)
        pipe = client.pipeline(transaction=False)
        pipe.delete(*keys)
        for message in messages:
            pipe.publish(CHANNEL, message)
        pipe.execute()


class Invalidator:
    """Publishes this process's admin changes and applies everyone's."""

    def __init__(
        self, *, redis: RedisLink, directory: TenantDirectory, holds: Holds | None = None
    ) -> None:
        self._redis = redis
        self._directory = directory
        # A move's hold:<id> / release:<id> travel on the same channel (gateway/hold.py).
        self._holds = holds
        self._tasks: set[asyncio.Task[None]] = set()

    def _apply(self, message: str) -> None:
        if self._holds is None or not self._holds.apply(message):
            self._directory.forget(message)

    async def announce(self, message: str) -> None:
        """Apply and publish one message once: a repeated hold could outlive its release."""
        self._apply(message)
        try:
            await self._redis.call(
                lambda r: r.publish(CHANNEL, message), wait_seconds=INVALIDATION_WAIT_SECONDS
            )
        except RedisDown:
            log.warning("redis is down: %s reaches only this gateway", message)

    async def publish(self, keys: list[str], messages: list[str]) -> None:
        """Drop the entries here, in Redis and (via pub/sub) in every other gateway."""
        await self._publish_once(keys, messages)
        self.publish_later(SECOND_PASS_DELAY_SECONDS, keys, messages)

    def publish_soon(self, keys: list[str], messages: list[str]) -> None:
        """`publish` from a callback: as a task this invalidator tracks and closes."""
        self._track(self.publish(keys, messages))

    def publish_later(self, delay: float, keys: list[str], messages: list[str]) -> None:
        """One more pass after `delay` s, for writes that may land after the first one."""
        self._track(self._pass_after(delay, keys, messages))

    def _track(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _publish_once(self, keys: list[str], messages: list[str]) -> None:
        for message in messages:
            self._apply(message)

        async def send(client: Redis) -> None:
            pipe = client.pipeline(transaction=False)
            pipe.delete(*keys)
            for message in messages:
                pipe.publish(CHANNEL, message)
            await pipe.execute()

        try:
            # An invalidation is worth waiting for a busy pool: dropping it leaves a stale grant.
            await self._redis.call(send, wait_seconds=INVALIDATION_WAIT_SECONDS)
        except RedisDown:
            # Other replicas will see the change when their short in-process TTL ends.
            log.warning("redis is down: invalidation %s reaches other gateways by TTL", messages)

    async def _pass_after(self, delay: float, keys: list[str], messages: list[str]) -> None:
        await asyncio.sleep(delay)
        await self._publish_once(keys, messages)

    async def listen(self, client: Redis) -> None:
        """Apply every message on the channel until cancelled; reconnect when Redis returns."""
        subscribed_before = False
        while True:
            try:
                async with client.pubsub(ignore_subscribe_messages=True) as pubsub:
                    await pubsub.subscribe(CHANNEL)
                    if subscribed_before:
                        # Messages published while we were away are lost: start clean.
                        self._directory.local.clear()
                        log.warning("invalidation channel re-subscribed; in-process cache cleared")
                    subscribed_before = True
                    while True:
                        message = await pubsub.get_message(timeout=1.0)
                        if message is not None and message["type"] == "message":
                            self._apply(str(message["data"]))
            except (RedisError, OSError, TimeoutError):
                await asyncio.sleep(0.5)

    async def aclose(self) -> None:
        """Wait for pending second passes (they are short) so nothing outlives the app."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
