"""Which placement a request's tenant lives in, and the epoch fence around a move.

The gateway signs the tenant's placement and its placement epoch (services.tenancy.placements);
every move bumps the epoch. A service remembers the newest epoch it has seen per tenant and
refuses an older one: a gateway replica whose cache still holds the old placement cannot
write there once this service has served the tenant at its new place.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from services.tenancy.placements import EPOCH_FIELD, PLACEMENT_FIELD, SHARED
from services.tenancy.signing import TenantContext


class StalePlacement(Exception):
    """The context's placement epoch is older than one already seen for its tenant."""


class UnknownPlacement(Exception):
    """The context names a placement this service has no connection for."""


@dataclass(frozen=True, slots=True)
class Placement:
    name: str
    epoch: int


def placement_of(context: TenantContext) -> Placement:
    """The signed placement (absent: `shared`, epoch 0, the tenant never moved)."""
    name = context.extra.get(PLACEMENT_FIELD, SHARED)
    raw_epoch = context.extra.get(EPOCH_FIELD, "0")
    epoch = int(raw_epoch) if raw_epoch.isascii() and raw_epoch.isdigit() else -1
    if epoch < 0:
        raise StalePlacement(f"malformed placement epoch {raw_epoch!r}")
    return Placement(name=name, epoch=epoch)


@dataclass(slots=True)
class EpochFence:
    """The newest epoch seen per tenant, in this process.

    Only tenants that ever moved (epoch > 0) take room, so it stays as small as the number
    of moves. Per process: a replica learns the new epoch from its first request after the
    cut-over; the cut-over itself holds the tenant at the gateway and invalidates every
    gateway replica first, which is what keeps stale contexts from arriving at all.
    """

    _newest: dict[int, int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def admit(self, tenant_id: int, epoch: int) -> None:
        """Record `epoch` for the tenant; StalePlacement when a newer one was seen."""
        if epoch == 0 and tenant_id not in self._newest:
            return  # the common case: a tenant that never moved, no lock taken
        with self._lock:
            newest = self._newest.get(tenant_id, 0)
            if epoch < newest:
                raise StalePlacement(f"tenant {tenant_id} epoch {epoch} < {newest}")
            self._newest[tenant_id] = epoch
