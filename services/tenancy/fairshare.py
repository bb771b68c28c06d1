"""A tenant's fair share of a service's connection pool.

No tenant holds more than `limit` database sessions of one service process at once; its
further requests wait (asynchronously: no worker thread is taken) up to `wait_seconds` for
one of its own to finish, then get 503. Other tenants never wait behind them: the pool keeps
`capacity - limit` connections that this tenant cannot take.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

log = logging.getLogger("tenancy")

OVER_SHARE = "this tenant is using its whole share of the service's database connections"


class OverShare(Exception):
    """The tenant already holds its share and none came free within the wait."""


@dataclass(slots=True)
class _Holders:
    semaphore: asyncio.Semaphore
    users: int = 0  # holders and waiters: the entry goes when nobody needs it


class TenantShares:
    """Per-tenant cap on concurrent database sessions; `limit=None` turns it off."""

    def __init__(self, *, limit: int | None, wait_seconds: float) -> None:
        self.limit = limit
        self.wait_seconds = wait_seconds
        self._tenants: dict[int, _Holders] = {}

    @classmethod
    def of_pool(
        cls, *, capacity: int, percent: int, wait_seconds: float, enabled: bool
    ) -> TenantShares:
        """`percent` of a pool of `capacity` connections (at least one) per tenant."""
        limit = max(1, capacity * percent // 100) if enabled else None
        return cls(limit=limit, wait_seconds=wait_seconds)

    @asynccontextmanager
    async def slot(self, tenant_id: int) -> AsyncIterator[None]:
        """Hold one of the tenant's slots for the block; `OverShare` when none comes free."""
        if self.limit is None:
            yield
            return
        holders = self._tenants.get(tenant_id)
        if holders is None:
            holders = self._tenants[tenant_id] = _Holders(asyncio.Semaphore(self.limit))
        holders.users += 1
        try:
            await self._acquire(holders.semaphore, tenant_id)
            try:
                yield
            finally:
                holders.semaphore.release()
        finally:
            holders.users -= 1
            if holders.users == 0:
                del self._tenants[tenant_id]

    async def _acquire(self, semaphore: asyncio.Semaphore, tenant_id: int) -> None:
        if not semaphore.locked():
            await semaphore.acquire()  # free: returns without suspending
            return
        try:
            async with asyncio.timeout(self.wait_seconds):
                await semaphore.acquire()
        except TimeoutError:
            log.info("tenant %s over its share of the pool (%s)", tenant_id, self.limit)
            raise OverShare(tenant_id) from None


async def _over_share(_request: Request, _error: Exception) -> JSONResponse:
    return JSONResponse({"detail": OVER_SHARE}, status_code=503, headers={"Retry-After": "1"})


def install_share_error_handler(app: FastAPI) -> None:
    """Answer `OverShare` with 503 and `Retry-After` (for that tenant only)."""
    app.add_exception_handler(OverShare, _over_share)
