"""Admission: a per-tenant in-flight cap, and fair queuing under a per-replica ceiling.

Everything here is in-process asyncio: no Redis round trip on the hot path. The counts are
per replica (README: "Fairness"), so with N replicas a tenant may hold N x its cap at once.

When the replica is at its ceiling, requests wait in one FIFO queue per tenant, and a freed
slot goes to the tenants in turn (round robin, one request each: deficit round robin with a
quantum of one request). A tenant with one request waiting is served after at most one
request of each other waiting tenant, never behind another's whole backlog.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from dataclasses import dataclass, field

from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

from gateway.errors import GatewayError
from gateway.metrics import Metrics

# Whole seconds, never 0 ("retry after 0 s" invites a hot loop); slots free up fast.
RETRY_AFTER = {"Retry-After": "1"}


@dataclass(slots=True)
class _Tenant:
    in_flight: int = 0
    waiting: deque[asyncio.Future[None]] = field(default_factory=deque)


class Slot:
    """One admitted request; release() exactly once frees it (later calls do nothing)."""

    __slots__ = ("_admission", "_tenant_id", "_released")

    def __init__(self, admission: Admission | None, tenant_id: int) -> None:
        self._admission = admission
        self._tenant_id = tenant_id
        self._released = admission is None

    def release(self) -> None:
        """Give the slot back (to the next tenant in turn, when some are waiting)."""
        if not self._released and self._admission is not None:
            self._released = True
            self._admission._release(self._tenant_id)

    def release_after(self, response: Response) -> Response:
        """The same response, freeing this slot once it is sent, failed or abandoned."""
        return _Releasing(response, self)


class _Releasing(Response):
    """Sends the wrapped response; the slot is released whatever happens while sending."""

    def __init__(self, inner: Response, slot: Slot) -> None:
        # Not Response.__init__: this object only forwards to `inner`.
        self.inner = inner
        self.slot = slot
        self.status_code = inner.status_code
        self.background = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_then_free(message: Message) -> None:
            # Freed before the last chunk leaves: a keep-alive client's next request must
            # not find this one still counted (measured: 429s at 8 connections, cap 16).
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                self.slot.release()
            await send(message)

        try:
            await self.inner(scope, receive, send_then_free)
        finally:
            self.slot.release()


class Admission:
    """Counts requests in flight per tenant and in all, and decides who goes next."""

    def __init__(
        self,
        *,
        default_cap: int,
        capacity: int,
        queue_timeout_seconds: float,
        metrics: Metrics,
        enabled: bool = True,
    ) -> None:
        self._default_cap = default_cap
        self._capacity = capacity if enabled else 0
        self._queue_timeout = queue_timeout_seconds
        self._metrics = metrics
        self._enabled = enabled
        self._tenants: dict[int, _Tenant] = {}
        # Tenants with requests waiting, in the order they get the next free slots.
        self._turns: deque[int] = deque()
        self._total = 0
        metrics.in_flight.set_function(lambda: self._total)
        metrics.queued.set_function(lambda: sum(len(t.waiting) for t in self._tenants.values()))

    @property
    def in_flight(self) -> int:
        """Requests admitted and not yet finished, all tenants together."""
        return self._total

    def in_flight_of(self, tenant_id: int) -> int:
        """Requests of this tenant admitted and not yet finished."""
        tenant = self._tenants.get(tenant_id)
        return tenant.in_flight if tenant else 0

    def cap_for(self, tenant_max_in_flight: int | None) -> int:
        """The tenant's own cap when it has one, else TENANT_MAX_IN_FLIGHT; 0 means none."""
        if not self._enabled:
            return 0
        return self._default_cap if tenant_max_in_flight is None else tenant_max_in_flight

    async def admit(self, tenant_id: int, *, cap: int) -> Slot:
        """A slot now, or after a fair wait; 429 over the tenant's cap or share, 503 when full."""
        if not self._enabled:
            return Slot(None, tenant_id)
        tenant = self._tenants.get(tenant_id)
        if tenant is None:
            tenant = self._tenants[tenant_id] = _Tenant()
        if cap > 0 and tenant.in_flight + len(tenant.waiting) >= cap:
            self._forget_if_idle(tenant_id)
            self._metrics.admission_refused.labels(reason="tenant_in_flight").inc()
            raise GatewayError(
                429,
                f"too many requests in flight for this tenant (max_in_flight {cap}); "
                "not a rate limit: retry when earlier requests finish",
                RETRY_AFTER,
            )
        if self._capacity <= 0 or (self._total < self._capacity and not self._turns):
            self._grant(tenant)
            return Slot(self, tenant_id)
        return await self._wait(tenant_id, tenant)

    async def _wait(self, tenant_id: int, tenant: _Tenant) -> Slot:
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        tenant.waiting.append(waiter)
        if tenant_id not in self._turns:
            self._turns.append(tenant_id)
        try:
            async with asyncio.timeout(self._queue_timeout):
                await waiter
        except BaseException as exc:
            if waiter.done() and not waiter.cancelled():
                # Granted in the same instant the wait ended: the slot is this request's.
                if isinstance(exc, TimeoutError):
                    return Slot(self, tenant_id)
                self._release(tenant_id)
                raise
            self._withdraw(tenant_id, tenant, waiter)
            if isinstance(exc, TimeoutError):
                raise self._refusal(tenant) from None
            raise
        return Slot(self, tenant_id)

    def _refusal(self, tenant: _Tenant) -> GatewayError:
        # The tenant's fair share is the ceiling split among the tenants that want slots.
        share = self._capacity / max(1, len(self._tenants))
        if tenant.in_flight > share:
            self._metrics.admission_refused.labels(reason="tenant_share").inc()
            return GatewayError(
                429, "this tenant holds its fair share of the gateway; retry shortly", RETRY_AFTER
            )
        self._metrics.admission_refused.labels(reason="saturated").inc()
        return GatewayError(503, "the gateway is saturated; retry shortly", RETRY_AFTER)

    def _grant(self, tenant: _Tenant) -> None:
        tenant.in_flight += 1
        self._total += 1

    def _withdraw(self, tenant_id: int, tenant: _Tenant, waiter: asyncio.Future[None]) -> None:
        with contextlib.suppress(ValueError):
            tenant.waiting.remove(waiter)
        if not tenant.waiting:
            with contextlib.suppress(ValueError):
                self._turns.remove(tenant_id)
        self._forget_if_idle(tenant_id)

    def _forget_if_idle(self, tenant_id: int) -> None:
        tenant = self._tenants.get(tenant_id)
        if tenant is not None and tenant.in_flight == 0 and not tenant.waiting:
            del self._tenants[tenant_id]

    def _release(self, tenant_id: int) -> None:
        tenant = self._tenants[tenant_id]
        tenant.in_flight -= 1
        self._total -= 1
        self._forget_if_idle(tenant_id)
        self._dispatch()

    def _dispatch(self) -> None:
        """Hand free slots to waiting tenants, one request per tenant per turn."""
        while self._turns and self._total < self._capacity:
            tenant_id = self._turns.popleft()
            tenant = self._tenants[tenant_id]
            # A waiter cancelled an instant ago is still queued until its task runs again.
            while tenant.waiting and tenant.waiting[0].done():
                tenant.waiting.popleft()
            if not tenant.waiting:
                continue
            tenant.waiting.popleft().set_result(None)
            self._grant(tenant)
            if tenant.waiting:
                self._turns.append(tenant_id)
