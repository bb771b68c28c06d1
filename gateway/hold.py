"""Holding one tenant's requests during a move's cut-over: a bounded wait, not an error.

The mover publishes `hold:<id>` and, once the placement has flipped, `release:<id>` on the
invalidation channel; every replica applies both. A request for a held tenant waits for
the release, at most HOLD_MAX_SECONDS (a lost release must not hold a tenant for good),
then reads the tenant's record afresh: the release follows the flip, so it names the new
placement and epoch.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

# The SPEC's write pause is at most 2 s; beyond this a held request goes on regardless
# (and meets the fence or the frozen source, a 503 with Retry-After, rather than a hang).
HOLD_MAX_SECONDS = 5.0


class Holds:
    """The tenants held on this replica, each with the event its requests wait on."""

    def __init__(self, *, max_seconds: float = HOLD_MAX_SECONDS) -> None:
        self._max = max_seconds
        self._held: dict[int, tuple[asyncio.Event, float]] = {}

    def apply(self, message: str) -> bool:
        """Apply `hold:<id>` or `release:<id>`; False for any other message."""
        kind, _, ident = message.partition(":")
        if kind not in ("hold", "release") or not ident.isdigit():
            return False
        tenant_id = int(ident)
        if kind == "hold":
            if tenant_id not in self._held:
                self._held[tenant_id] = (asyncio.Event(), time.monotonic())
        else:
            held = self._held.pop(tenant_id, None)
            if held is not None:
                held[0].set()
        return True

    async def wait(self, tenant_id: int) -> bool:
        """Wait while `tenant_id` is held (bounded); True when this request was held."""
        if not self._held:
            return False  # the hot path: nothing is moving, not even a dict lookup
        held = self._held.get(tenant_id)
        if held is None:
            return False
        event, since = held
        left = self._max - (time.monotonic() - since)
        if left > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), left)
        if not event.is_set():
            self._held.pop(tenant_id, None)  # expired: release it here
            event.set()
        return True
