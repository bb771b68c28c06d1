"""Moves that died with their process (a kill, a crash, a lost node) settle by themselves.

The process running a move beats its heartbeat (gateway/mover.py). Every gateway replica's
loop looks for a running move whose heartbeat is older than MOVE_HEARTBEAT_TIMEOUT_SECONDS
(never one it runs itself: a late beat there is a busy box, not a death) and takes it over:
the row lock (FOR UPDATE SKIP LOCKED) and the new owner written in the same transaction make
one replica, once, the move's owner. Then, as the move would have:

- before the flip: undo it (the source is unmarked if its mark is still this move's, the
  target's partial copy deleted); the tenant is served where it was; state `failed`;
- after the flip: finish it (the source keeps refusing the tenant, its copy is deleted);
  state `done`.

Either way every replica is released (a hold also expires by itself within 5 s) and told
to read the tenant's record afresh. A recovery that dies too goes stale in turn and is
taken over again: each step can be repeated.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import anyio
from sqlalchemy import Engine, text

from gateway import moverecord
from gateway.mover import Heartbeat, Signals, clean_source, running_here, undo
from gateway.store import find_tenant

log = logging.getLogger("gateway.move")
# A move recorded by an older gateway has no heartbeat and cannot be fenced: taken over
# only once it is this old (no move runs for hours).
UNFENCED_AFTER_SECONDS = 6 * 3600


@dataclass(frozen=True)
class Stale:
    """A move taken over, and whether its flip had happened."""

    move_id: int
    tenant_id: int
    source: str
    target: str
    previous_owner: str | None
    flipped: bool


def take_over(
    directory: Engine, owner: str, timeout_seconds: float, *, spare: Sequence[str]
) -> Stale | None:
    """Make `owner` the owner of one move whose heartbeat is stale; None when there is none.

    Moves owned by `spare` (the ones this process runs) are never taken."""
    with directory.begin() as conn:
        row = conn.execute(
            text(
                "SELECT id, tenant_id, from_placement, to_placement, owner FROM tenant_moves "
                "WHERE finished_at IS NULL AND (heartbeat_at < now() - make_interval(secs => :s) "
                "OR (heartbeat_at IS NULL AND started_at < now() - make_interval(secs => :u))) "
                "AND (owner IS NULL OR owner <> ALL(CAST(:spare AS text[]))) "
                "ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED"
            ),
            {"s": timeout_seconds, "u": UNFENCED_AFTER_SECONDS, "spare": list(spare)},
        ).first()
        if row is None:
            return None
        conn.execute(
            text("UPDATE tenant_moves SET owner = :o, heartbeat_at = now() WHERE id = :id"),
            {"o": owner, "id": row.id},
        )
        # Read while holding the row's lock: the runner's flip takes the same lock, so it
        # either committed before this (and is seen) or can no longer happen.
        placement = conn.execute(
            text("SELECT placement FROM tenants WHERE id = :t"), {"t": row.tenant_id}
        ).scalar()
    return Stale(
        move_id=int(row.id),
        tenant_id=int(row.tenant_id),
        source=str(row.from_placement),
        target=str(row.to_placement),
        previous_owner=row.owner,
        flipped=placement == row.to_placement,
    )


@dataclass
class Recovery:
    directory: Engine
    app_engines: dict[str, Engine]
    signals: Signals
    timeout_seconds: float

    def settle_one(self) -> dict[str, Any] | None:
        """Take over one stale move and settle it; its final record, or None if none."""
        owner = moverecord.new_owner()
        stale = take_over(self.directory, owner, self.timeout_seconds, spare=running_here())
        if stale is None:
            return None
        record = moverecord.Record(self.directory, stale.move_id, owner)
        beat = Heartbeat(record, self.timeout_seconds / 5)
        beat.start()
        why = f"interrupted: its runner ({stale.previous_owner or 'unknown'}) stopped"
        log.warning("move of tenant %s: %s; %s takes it over", stale.tenant_id, why, owner)
        try:
            for name in (stale.source, stale.target):
                if name not in self.app_engines:
                    raise moverecord.MoveLost(f"placement {name} is not reachable from here")
            if stale.flipped:
                clean_source(self.app_engines, stale.tenant_id, stale.source)
                return record.finish("done", error=f"{why} after the cut-over; cleaned up")
            undo(self.app_engines, stale.tenant_id, stale.move_id, stale.source, stale.target)
            return record.finish("failed", error=f"{why}; rolled back")
        finally:
            beat.stopped.set()
            self._tell(stale.tenant_id)

    def _tell(self, tenant_id: int) -> None:
        """Release the tenant on every replica and have them read its record again."""
        self.signals.release(tenant_id)
        tenant = find_tenant(self.directory, tenant_id)
        if tenant is not None:
            self.signals.invalidate(tenant)


def interval(timeout_seconds: float) -> float:
    """How often a replica looks: a third of the timeout (5 s by default)."""
    return timeout_seconds / 3


async def run_recovery(recovery: Recovery) -> None:
    """Until cancelled: settle every move whose runner stopped beating."""
    if not recovery.app_engines:
        return  # no access to tenant tables here (APP_DATABASE_URL unset): moves neither
    while True:
        # Jitter: replicas started together do not all query at the same instant.
        pause = interval(recovery.timeout_seconds) * random.uniform(0.8, 1.2)  # noqa: S311
        await asyncio.sleep(pause)
        try:
            while (settled := await anyio.to_thread.run_sync(recovery.settle_one)) is not None:
                log.warning("move of tenant %s settled: %s", settled["tenant_id"], settled)
        except Exception as exc:  # a database away, a placement unreachable: next round
            log.warning("move recovery: %s", str(exc).splitlines()[0] if str(exc) else repr(exc))
