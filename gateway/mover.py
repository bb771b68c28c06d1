"""A live move of one tenant between placements (SPEC §11), start to finish.

copying: the source logs the tenant's writes, then one snapshot of its rows is copied.
catching_up: the logged writes are replayed until few are left.
cutover: every gateway holds the tenant's requests (a bounded wait, not errors); the source
    refuses the tenant's writes but the mover's; the last changes are replayed; counts and
    ordered hashes must agree; the directory flips the placement and bumps its epoch; the
    replicas are told; held requests go on, to the new placement.
done: then the source's copy is deleted in batches (it stays refused there for good).
Anything failing before the flip undoes the move: the tenant keeps being served from the
source, and the target's partial copy is deleted.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, text
from sqlalchemy.exc import IntegrityError

from gateway import movedata
from gateway.placements import Placements
from gateway.store import TenantNotFound, TenantRecord, find_tenant, tenants
from gateway.tenantdata import make_app_engine

log = logging.getLogger("gateway.move")
# Catch-up passes before the cut-over: stop early once a pass finds this few changes.
SETTLED_CHANGES = 200
MAX_CATCH_UP_PASSES = 50
# After "hold" is published, before the source refuses writes: the replicas' pub/sub delivery.
HOLD_SETTLE_SECONDS = 0.05

_MOVE_COLUMNS = (
    "tenant_id, from_placement, to_placement, state, rows_copied, write_pause_ms, error, "
    "started_at, finished_at"
)


class MoveRunning(Exception):
    """The tenant already has a move under way."""


@dataclass
class Signals:
    """How the mover tells gateway replicas: hold and release one tenant, forget its record."""

    hold: Callable[[int], None]
    release: Callable[[int], None]
    invalidate: Callable[[TenantRecord], None]


@dataclass
class Move:
    """One move; `run` does it all (blocking: a worker thread or the CLI)."""

    directory: Engine  # the gateway role on shared
    app_engines: dict[str, Engine]  # the services' role, per placement
    placements: Placements
    signals: Signals
    tenant_id: int
    source: str
    target: str
    move_id: int
    progress: Callable[[str], None] = field(default=lambda _m: None)

    def run(self) -> dict[str, Any]:
        """Move the tenant; the final record (state `done` or `failed`)."""
        flipped = held = False
        src, dst = self.app_engines[self.source], self.app_engines[self.target]
        try:
            data = movedata.data_tables(src)
            names = [t.name for t in data]
            adder = self.placements.parent_row_adder(self.target)
            if adder is not None:
                adder(self.tenant_id)
            # The target admits only the mover until the flip; a failed move's leftovers go.
            movedata.mark(dst, self.tenant_id, "frozen")
            movedata.clear(dst, self.tenant_id, names)
            movedata.mark(src, self.tenant_id, "capturing")
            movedata.wait_out_older_transactions(src)
            copied = movedata.copy(
                src, dst, self.tenant_id, data, progress=lambda n: self._copied(n)
            )
            self._update(state="catching_up", rows_copied=copied)
            self.progress(f"copied {copied} rows; catching up")
            for _ in range(MAX_CATCH_UP_PASSES):
                if movedata.catch_up(src, dst, self.tenant_id, data) < SETTLED_CHANGES:
                    break
            self._update(state="cutover")
            started = time.monotonic()
            self.signals.hold(self.tenant_id)
            held = True
            time.sleep(HOLD_SETTLE_SECONDS)
            movedata.mark(src, self.tenant_id, "frozen")
            movedata.wait_out_older_transactions(src)
            froze = time.monotonic()
            while movedata.catch_up(src, dst, self.tenant_id, data):
                pass
            caught_up = time.monotonic()
            # Both sides at once: they are different databases, and the tenant is waiting.
            with ThreadPoolExecutor(max_workers=2) as pool:
                sides = [
                    pool.submit(movedata.fingerprint, e, self.tenant_id, data) for e in (src, dst)
                ]
                before, after = (side.result() for side in sides)
            if before != after:
                raise movedata.MoveError(f"verification failed: source {before}, target {after}")
            verified = time.monotonic()
            movedata.mark(dst, self.tenant_id, None)
            record = self._flip()
            flipped = True
            self.signals.invalidate(record)
            self.signals.release(self.tenant_id)
            held = False
            pause_ms = int((time.monotonic() - started) * 1000)
            self._update(write_pause_ms=pause_ms)
            log.info(
                "move of tenant %s: writes paused %d ms (hold and freeze %d, last changes %d, "
                "verification %d, flip and release %d)",
                self.tenant_id,
                pause_ms,
                *(int(b * 1000 - a * 1000) for a, b in ((started, froze), (froze, caught_up))),
                int((verified - caught_up) * 1000),
                pause_ms - int((verified - started) * 1000),
            )
            self.progress(f"cut over to {self.target} (writes paused {pause_ms} ms); cleaning up")
            movedata.clear(src, self.tenant_id, names)
            return self._finish("done")
        except Exception as exc:  # whatever failed (a driver error, a refusal), undo the move
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
            log.warning("move of tenant %s failed: %s", self.tenant_id, reason)
            if flipped:  # moved; only the source's cleanup failed: it stays refused there
                return self._finish("done", error=f"source cleanup: {reason}")
            self._undo(src, dst)
            return self._finish("failed", error=reason)
        finally:
            if held:
                self.signals.release(self.tenant_id)

    def _copied(self, rows: int) -> None:
        if rows % (movedata.COPY_BATCH_ROWS * 25) == 0:
            self._update(rows_copied=rows)
            self.progress(f"{rows} rows copied")

    def _undo(self, src: Engine, dst: Engine) -> None:
        """Back to before: the source serves the tenant; the target's copy goes."""
        for step in (
            lambda: movedata.mark(src, self.tenant_id, None),
            lambda: movedata.clear(
                dst, self.tenant_id, [t.name for t in movedata.data_tables(dst)]
            ),
        ):
            try:
                step()
            except Exception as exc:  # the next move of it clears what is left
                log.warning("undoing the move of tenant %s: %s", self.tenant_id, exc)

    def _flip(self) -> TenantRecord:
        with self.directory.begin() as conn:
            row = conn.execute(
                tenants.update()
                .where(tenants.c.id == self.tenant_id, tenants.c.placement == self.source)
                .values(placement=self.target, placement_epoch=tenants.c.placement_epoch + 1)
                .returning(tenants)
            ).first()
        if row is None:
            raise movedata.MoveError("the tenant's placement changed under the move")
        return TenantRecord(**row._mapping)

    def _update(self, **values: Any) -> None:
        sets = ", ".join(f"{k} = :{k}" for k in values)
        with self.directory.begin() as conn:
            conn.execute(
                text(f"UPDATE tenant_moves SET {sets} WHERE id = :id"),
                {**values, "id": self.move_id},
            )

    def _finish(self, state: str, *, error: str | None = None) -> dict[str, Any]:
        with self.directory.begin() as conn:
            row = conn.execute(
                text(
                    "UPDATE tenant_moves SET state = :s, error = :e, finished_at = now() "
                    f"WHERE id = :id RETURNING {_MOVE_COLUMNS}"
                ),
                {"s": state, "e": error, "id": self.move_id},
            ).one()
        return _as_json(row._mapping)


def begin(
    directory: Engine, placements: Placements, tenant_id: int, target: str
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
                    "INSERT INTO tenant_moves (tenant_id, from_placement, to_placement, state) "
                    "VALUES (:t, :f, :to, 'copying') RETURNING id"
                ),
                {"t": tenant_id, "f": tenant.placement, "to": target},
            ).scalar_one()
    except IntegrityError as exc:
        raise MoveRunning(tenant_id) from exc
    return tenant.placement, int(move_id)


def latest(directory: Engine, tenant_id: int) -> dict[str, Any] | None:
    """The tenant's newest move, as GET /admin/tenants/{id}/move shows it, or None."""
    with directory.connect() as conn:
        row = conn.execute(
            text(
                f"SELECT {_MOVE_COLUMNS} FROM tenant_moves WHERE tenant_id = :t "
                "ORDER BY id DESC LIMIT 1"
            ),
            {"t": tenant_id},
        ).first()
    return _as_json(row._mapping) if row is not None else None


def _as_json(row: Any) -> dict[str, Any]:
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


def app_engines(urls: dict[str, str]) -> dict[str, Engine]:
    """The services' role's engine in every placement (for the mover)."""
    return {name: make_app_engine(url) for name, url in urls.items()}
