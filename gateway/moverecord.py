"""The tenant_moves record of a move, in the directory (shared): begin, follow, own, finish.

A running move has an owner (the process running it) and a heartbeat. Every write of the
owner names itself: once another replica has taken a stale move over, the first owner's
writes match nothing and it learns that it lost the move (MoveLost). The flip of the
placement takes the move's row lock in the same transaction, so a flip and a take-over
never both happen: whichever locks the row first wins.
"""

from __future__ import annotations

import datetime as dt
import os
import secrets
import socket
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, text
from sqlalchemy.exc import IntegrityError

from gateway import movedata
from gateway.placements import Placements
from gateway.store import TenantNotFound, TenantRecord, find_tenant, tenants

_COLUMNS = (
    "tenant_id, from_placement, to_placement, state, rows_copied, write_pause_ms, error, "
    "started_at, finished_at"
)


class MoveRunning(Exception):
    """The tenant already has a move under way."""


class MoveLost(Exception):
    """This process no longer owns the move: its heartbeat went stale and another took it."""


def new_owner() -> str:
    """A name for the process running a move (host, pid, and a nonce against pid reuse)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


def begin(
    directory: Engine, placements: Placements, tenant_id: int, target: str, *, owner: str
) -> tuple[str, int]:
    """Check and record a move: (source placement, move id). TenantNotFound, MoveRunning,
    UnknownPlacement, or MoveError when the tenant is already there."""
    placements.check(target)
    tenant = find_tenant(directory, tenant_id)
    if tenant is None or tenant.status == "pending_deletion":
        raise TenantNotFound(tenant_id)
    if tenant.placement == target:
        raise movedata.MoveError(f"tenant {tenant_id} is already in {target}")
    try:
        with directory.begin() as conn:
            # FOR SHARE: a deletion request (an UPDATE of the row) waits for this move's
            # record, so a purge that follows it sees the move and refuses (409).
            status = conn.execute(
                text("SELECT status FROM tenants WHERE id = :t FOR SHARE"), {"t": tenant_id}
            ).scalar()
            if status is None or status == "pending_deletion":
                raise TenantNotFound(tenant_id)
            move_id = conn.execute(
                text(
                    "INSERT INTO tenant_moves (tenant_id, from_placement, to_placement, state, "
                    "owner, heartbeat_at) VALUES (:t, :f, :to, 'copying', :o, now()) RETURNING id"
                ),
                {"t": tenant_id, "f": tenant.placement, "to": target, "o": owner},
            ).scalar_one()
    except IntegrityError as exc:
        raise MoveRunning(tenant_id) from exc
    return tenant.placement, int(move_id)


@dataclass(frozen=True)
class Record:
    """One move's row, as its owner writes it."""

    directory: Engine
    move_id: int
    owner: str

    def heartbeat(self) -> None:
        """Say this process still runs the move; MoveLost if it no longer owns it."""
        self.update()

    def update(self, **values: Any) -> None:
        """Set columns (and the heartbeat); MoveLost if this process no longer owns it."""
        sets = "".join(f", {k} = :{k}" for k in values)
        with self.directory.begin() as conn:
            self._owned(conn, f"heartbeat_at = now(){sets}", values)

    def flip(self, tenant_id: int, source: str, target: str) -> TenantRecord:
        """Point the directory at `target` and bump the epoch, while still the move's owner."""
        with self.directory.begin() as conn:
            self._owned(conn, "heartbeat_at = now()", {})  # and holds the row's lock
            row = conn.execute(
                tenants.update()
                .where(tenants.c.id == tenant_id, tenants.c.placement == source)
                .values(placement=target, placement_epoch=tenants.c.placement_epoch + 1)
                .returning(tenants)
            ).first()
            if row is None:
                raise movedata.MoveError("the tenant's placement changed under the move")
        return TenantRecord(**row._mapping)

    def finish(self, state: str, *, error: str | None = None) -> dict[str, Any]:
        """End the move (`done` or `failed`); its final record."""
        with self.directory.begin() as conn:
            row = self._owned(
                conn,
                "state = :s, error = :e, finished_at = now()",
                {"s": state, "e": error},
                returning=_COLUMNS,
            )
        return as_json(row._mapping)

    def _owned(self, conn: Any, sets: str, values: dict[str, Any], *, returning: str = "id") -> Any:
        row = conn.execute(
            text(
                f"UPDATE tenant_moves SET {sets} WHERE id = :id AND owner = :owner "
                f"AND finished_at IS NULL RETURNING {returning}"
            ),
            {**values, "id": self.move_id, "owner": self.owner},
        ).first()
        if row is None:
            raise MoveLost(f"move {self.move_id} is no longer this process's")
        return row


def latest(directory: Engine, tenant_id: int) -> dict[str, Any] | None:
    """The tenant's newest move, as GET /admin/tenants/{id}/move shows it, or None."""
    with directory.connect() as conn:
        row = conn.execute(
            text(
                f"SELECT {_COLUMNS} FROM tenant_moves WHERE tenant_id = :t ORDER BY id DESC LIMIT 1"
            ),
            {"t": tenant_id},
        ).first()
    return as_json(row._mapping) if row is not None else None


def as_json(row: Any) -> dict[str, Any]:
    def iso(value: dt.datetime | None) -> str | None:
        return value.isoformat() if value is not None else None

    return {
        "tenant_id": row["tenant_id"],
        "from": row["from_placement"],
        "to": row["to_placement"],
        "state": row["state"],
        "rows_copied": row["rows_copied"],
        "write_pause_ms": row["write_pause_ms"],
        "error": row["error"],
        "started_at": iso(row["started_at"]),
        "finished_at": iso(row["finished_at"]),
    }
