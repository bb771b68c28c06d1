"""A live move of one tenant between placements (SPEC §11), start to finish.

copying: the source logs the tenant's writes, then one snapshot of its rows is copied.
catching_up: the logged writes are replayed until few are left; both sides are hashed
    chunk by chunk while the source still serves (gateway/moveverify.py).
cutover: every gateway holds the tenant's requests (a bounded wait, not errors); the source
    refuses the tenant's writes but the mover's; the last changes are replayed; the chunks
    they touched are hashed again and every row is proven equal; the id counters are
    carried over; the directory flips the placement and bumps its epoch; the replicas are
    told; held requests go on, to the new placement.
done: then the source's copy is deleted in batches (it stays refused there for good).
Anything failing before the flip undoes the move: the tenant keeps being served from the
source, and the target's partial copy is deleted. The process running a move beats a
heartbeat; if it dies, any gateway replica finishes or undoes the move the same way
(gateway/moverecovery.py).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine

from gateway import movedata, moverecord, moveverify
from gateway.moverecord import MoveLost
from gateway.placements import Placements
from gateway.store import TenantRecord, find_tenant
from gateway.tenantdata import Table, make_app_engine

log = logging.getLogger("gateway.move")
# Catch-up passes before the verification: stop early once a pass finds this few changes.
SETTLED_CHANGES = 200
MAX_CATCH_UP_PASSES = 50
# After "hold" is published, before the source refuses writes: the replicas' pub/sub delivery.
HOLD_SETTLE_SECONDS = 0.05
# The default of MOVE_HEARTBEAT_TIMEOUT_SECONDS; the runner beats five times per span.
HEARTBEAT_TIMEOUT_SECONDS = 15.0
# Owners of the moves running in this process. Its own recovery loop never takes them over,
# however late a beat is (a starved box): their runner is alive by definition. Another
# replica still may, and the owner fence makes that safe.
_running_here: set[str] = set()


def running_here() -> list[str]:
    """The owners of the moves this process is running now."""
    return list(_running_here)


@dataclass
class Signals:
    """How the mover tells gateway replicas: hold and release one tenant, forget its record."""

    hold: Callable[[int], None]
    release: Callable[[int], None]
    invalidate: Callable[[TenantRecord], None]


def undo(
    engines: dict[str, Engine], tenant_id: int, move_id: int, source: str, target: str
) -> None:
    """Back to before the move: the source serves the tenant; the target's copy goes.

    The source is unmarked only while the mark is this move's: a newer move's stays."""
    movedata.shift(engines[source], tenant_id, move_id, None)
    dst = engines[target]
    movedata.clear(dst, tenant_id, [t.name for t in movedata.data_tables(dst)])


def clean_source(engines: dict[str, Engine], tenant_id: int, source: str) -> None:
    """After the flip: delete the tenant's rows at the source (it stays `frozen` there)."""
    src = engines[source]
    movedata.clear(src, tenant_id, [t.name for t in movedata.data_tables(src)])


class Heartbeat(threading.Thread):
    """Refreshes the move's heartbeat until stopped; notes when the move was taken over."""

    def __init__(self, record: moverecord.Record, every_seconds: float) -> None:
        super().__init__(name=f"move-{record.move_id}-heartbeat", daemon=True)
        self.record, self.every = record, every_seconds
        self.stopped, self.lost = threading.Event(), threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(self.every):
            try:
                self.record.heartbeat()
            except MoveLost:
                self.lost.set()
                return
            except Exception as exc:  # the directory is away: try again; a stale beat is safe
                log.warning("move %s heartbeat: %s", self.record.move_id, exc)

    def check(self) -> None:
        """MoveLost once the move was taken over (checked between steps)."""
        if self.lost.is_set():
            raise MoveLost(f"move {self.record.move_id} was taken over")


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
    owner: str
    heartbeat_timeout_seconds: float = HEARTBEAT_TIMEOUT_SECONDS
    progress: Callable[[str], None] = field(default=lambda _m: None)

    def run(self) -> dict[str, Any]:
        """Move the tenant; the final record (state `done` or `failed`)."""
        record = moverecord.Record(self.directory, self.move_id, self.owner)
        beat = Heartbeat(record, self.heartbeat_timeout_seconds / 5)
        beat.start()
        flipped = held = False
        _running_here.add(self.owner)  # taken out in the `finally` below
        try:
            record.heartbeat()
            data = self._copy(record, beat)
            sides, chunks = self._verify_while_serving(record, beat, data)
            beat.check()
            started = time.monotonic()
            self.signals.hold(self.tenant_id)
            held = True
            self._cut_over(sides, chunks, beat)
            flipped_record = record.flip(self.tenant_id, self.source, self.target)
            flipped = True
            self.signals.invalidate(flipped_record)
            self.signals.release(self.tenant_id)
            held = False
            pause_ms = int((time.monotonic() - started) * 1000)
            record.update(write_pause_ms=pause_ms)
            self.progress(f"cut over to {self.target} (writes paused {pause_ms} ms); cleaning up")
            clean_source(self.app_engines, self.tenant_id, self.source)
            return record.finish("done")
        except MoveLost as exc:  # another replica took the move over and settles it
            log.warning("move of tenant %s: %s", self.tenant_id, exc)
            found = moverecord.latest(self.directory, self.tenant_id)
            return found or {"tenant_id": self.tenant_id, "state": "lost", "error": str(exc)}
        except Exception as exc:  # whatever failed (a driver error, a refusal), undo the move
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
            log.warning("move of tenant %s failed: %s", self.tenant_id, reason)
            if held:  # before the undo: its target clean-up takes a while; the source serves
                self.signals.release(self.tenant_id)
                held = False
            return self._settle_failure(record, flipped=flipped, reason=reason)
        finally:
            beat.stopped.set()
            _running_here.discard(self.owner)
            if held:
                self.signals.release(self.tenant_id)

    def _copy(self, record: moverecord.Record, beat: Heartbeat) -> list[Table]:
        """Mark both sides, then copy one snapshot of the tenant's rows; the tables."""
        src, dst = self.app_engines[self.source], self.app_engines[self.target]
        data = movedata.data_tables(src)
        names = [t.name for t in data]
        adder = self.placements.parent_row_adder(self.target)
        if adder is not None:
            adder(self.tenant_id)
        # The target admits only the mover until the flip; a failed move's leftovers go.
        movedata.mark(dst, self.tenant_id, "frozen", self.move_id)
        movedata.clear(dst, self.tenant_id, names)
        movedata.mark(src, self.tenant_id, "capturing", self.move_id)
        movedata.wait_out_older_transactions(src)

        def copied(rows: int) -> None:
            beat.check()
            if rows % (movedata.COPY_BATCH_ROWS * 25) == 0:
                record.update(rows_copied=rows)
                self.progress(f"{rows} rows copied")

        total = movedata.copy(src, dst, self.tenant_id, data, progress=copied)
        record.update(state="catching_up", rows_copied=total)
        self.progress(f"copied {total} rows; catching up")
        return data

    def _verify_while_serving(
        self, record: moverecord.Record, beat: Heartbeat, data: list[Table]
    ) -> tuple[moveverify.Sides, moveverify.Chunks]:
        """Catch up, then prove every chunk equal once (re-checking the dirty ones)."""
        chunks = moveverify.Chunks()
        src, dst = self.app_engines[self.source], self.app_engines[self.target]

        def catch_up() -> int:
            beat.check()
            taken, ids = movedata.catch_up(src, dst, self.tenant_id, data)
            chunks.touched(ids)
            return taken

        for _ in range(MAX_CATCH_UP_PASSES):
            if catch_up() < SETTLED_CHANGES:
                break
        sides = moveverify.Sides(src, dst, self.tenant_id, data, catch_up)
        sides.sweep(chunks)
        sides.recheck(chunks)
        self.progress(f"verified while serving; {chunks.dirty_count()} chunks left to re-check")
        record.update(state="cutover")
        return sides, chunks

    def _cut_over(
        self, sides: moveverify.Sides, chunks: moveverify.Chunks, beat: Heartbeat
    ) -> None:
        """The pause: freeze the source, drain the log, prove equality, carry the counters."""
        src, dst = self.app_engines[self.source], self.app_engines[self.target]
        marks = time.monotonic()
        time.sleep(HOLD_SETTLE_SECONDS)
        if not movedata.shift(src, self.tenant_id, self.move_id, "frozen"):
            raise MoveLost(f"move {self.move_id}: the source's mark is no longer its own")
        movedata.wait_out_older_transactions(src)
        froze = time.monotonic()
        while sides.catch_up():  # each take's ids mark their chunks dirty
            pass
        caught_up = time.monotonic()
        sides.final(chunks)
        movedata.carry_counters(src, dst, self.tenant_id)
        verified = time.monotonic()
        beat.check()
        if not movedata.shift(dst, self.tenant_id, self.move_id, None):
            raise MoveLost(f"move {self.move_id}: the target's mark is no longer its own")
        log.info(
            "move of tenant %s: hold and freeze %d ms, last changes %d ms, verification of "
            "%d chunks and counters %d ms",
            self.tenant_id,
            int((froze - marks) * 1000),
            int((caught_up - froze) * 1000),
            chunks.dirty_count(),
            int((verified - caught_up) * 1000),
        )

    def _settle_failure(
        self, record: moverecord.Record, *, flipped: bool, reason: str
    ) -> dict[str, Any]:
        try:
            if not flipped:
                # A flip whose answer was lost may still have committed: ask the directory.
                tenant = find_tenant(self.directory, self.tenant_id)
                flipped = tenant is not None and tenant.placement == self.target
            if flipped:  # moved; only the source's cleanup failed: it stays refused there
                return record.finish("done", error=f"source cleanup: {reason}")
            undo(self.app_engines, self.tenant_id, self.move_id, self.source, self.target)
            return record.finish("failed", error=reason)
        except Exception as exc:  # left running: its heartbeat stops, the recovery settles it
            log.warning("move of tenant %s: left to the recovery: %s", self.tenant_id, exc)
            return {"tenant_id": self.tenant_id, "state": "failed", "error": reason}


def app_engines(urls: dict[str, str]) -> dict[str, Engine]:
    """The services' role's engine in every placement (for the mover)."""
    return {name: make_app_engine(url) for name, url in urls.items()}
