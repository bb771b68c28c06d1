"""A bounded pool of psycopg 3 async connections for the hot reads (services/tenancy/asyncread.py).

Kept small and strict, like the write engine's pool (services/tenancy/runtime.py): at most
`size` connections, all kept once opened (no churn of PostgreSQL backends), a connect that
fails fails its request at once (a fast 503), a request that finds every connection busy
waits at most `timeout` seconds, then `PoolExhausted` (503). A connection comes back only
idle and healthy: one left in a transaction (a failed or cancelled read) is closed, not
reused, so nothing of one tenant's transaction can reach the next checkout. Connections are
in autocommit mode: a read sends its own BEGIN and COMMIT in its one message (asyncread.py),
and psycopg adds no BEGIN of its own in another.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import psycopg
from psycopg.pq import TransactionStatus


class PoolExhausted(psycopg.OperationalError):
    """Every connection stayed busy for the whole wait."""


class ReadPool:
    """At most `size` connections to `conninfo`, opened on demand and kept."""

    def __init__(self, conninfo: str, *, size: int, timeout: float, **kwargs: Any) -> None:
        self.conninfo = conninfo
        self.size = size
        self.timeout = timeout
        self.kwargs = kwargs
        self._idle: list[psycopg.AsyncConnection[Any]] = []
        self._open = 0  # idle + checked out + being opened
        self._freed = asyncio.Condition()

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        """A connection for the block; given back (or dropped when unfit) after it."""
        conn = await self._checkout()
        try:
            yield conn
        finally:
            await self._checkin(conn)

    async def _checkout(self) -> psycopg.AsyncConnection[Any]:
        if self._idle:
            return self._idle.pop()
        if self._open < self.size:
            return await self._connect()
        try:
            async with asyncio.timeout(self.timeout), self._freed:
                await self._freed.wait_for(lambda: bool(self._idle) or self._open < self.size)
        except TimeoutError:
            raise PoolExhausted(f"no connection free within {self.timeout:g} s") from None
        return self._idle.pop() if self._idle else await self._connect()

    async def _connect(self) -> psycopg.AsyncConnection[Any]:
        self._open += 1
        try:
            return await psycopg.AsyncConnection.connect(
                self.conninfo, autocommit=True, **self.kwargs
            )
        except BaseException:
            self._open -= 1
            await self._notify()
            raise

    async def _checkin(self, conn: psycopg.AsyncConnection[Any]) -> None:
        if conn.broken:
            # PostgreSQL went away: the idle ones are most likely dead too. Dropping them
            # all (as SQLAlchemy invalidates its pool) makes the next requests reconnect.
            await self.close()
        if conn.closed or conn.info.transaction_status != TransactionStatus.IDLE:
            self._open -= 1
            await conn.close()
        else:
            self._idle.append(conn)
        await self._notify()

    async def _notify(self) -> None:
        async with self._freed:
            self._freed.notify()

    async def close(self) -> None:
        """Close the idle connections (at shutdown, when no request holds one)."""
        idle, self._idle = self._idle, []
        self._open -= len(idle)
        for conn in idle:
            await conn.close()
