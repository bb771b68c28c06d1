"""One move through the admin API, followed to its end, and what the load saw during it."""

from __future__ import annotations

import bisect
import time
from dataclasses import dataclass
from typing import Any

import httpx

from bench.lifecycle.figures import Figure
from bench.movelive.load import Load, Request

POLL_SECONDS = 0.1
MAX_PAUSE_MS = 2000
MAX_P95_RATIO = 1.2
# The figures of each move after its own, by name suffix.
PARTS = (" write pause", " client write gap", " others p95")


@dataclass(frozen=True, slots=True)
class MoveRun:
    """A move as the client saw it: when it was asked for, when the copy ended, the end."""

    label: str  # "move out", "move back"
    to: str
    posted: float  # time.monotonic()
    copied: float  # the first poll that found it past `copying`
    ended: float
    record: dict[str, Any]  # GET /admin/tenants/{id}/move at the end

    @property
    def done(self) -> bool:
        return self.record.get("state") == "done" and self.record.get("to") == self.to


def move(admin: httpx.Client, tenant_id: int, to: str, *, label: str, timeout: float) -> MoveRun:
    """POST the move, poll it until `done` or `failed`; RuntimeError if it never ends."""
    posted = time.monotonic()
    started = admin.post(f"/admin/tenants/{tenant_id}/move", json={"to": to})
    if started.status_code != 202:
        raise RuntimeError(
            f"{label}: the move answered {started.status_code}: {started.text[:200]}"
        )
    copied = None
    deadline = posted + timeout
    while True:
        record = admin.get(f"/admin/tenants/{tenant_id}/move").json()
        now = time.monotonic()
        if copied is None and record["state"] != "copying":
            copied = now
        if record["state"] in ("done", "failed"):
            return MoveRun(label, to, posted, copied or now, now, record)
        if now > deadline:
            raise RuntimeError(f"{label}: still {record['state']} after {timeout:.0f} s")
        time.sleep(POLL_SECONDS)


def p95_ms(requests: list[Request]) -> float:
    """Nearest-rank 95th percentile latency in milliseconds (0 with no requests)."""
    ordered = sorted(r.seconds for r in requests)
    if not ordered:
        return 0.0
    rank = max(0, min(len(ordered) - 1, round(0.95 * len(ordered) + 0.5) - 1))
    return ordered[rank] * 1000.0


def _longest_gap(done: list[float], start: float, end: float) -> float:
    """The longest gap between successive times in `done` (sorted) from the last one
    before `start` to the first one after `end`, in ms."""
    first = max(0, bisect.bisect_right(done, start) - 1)
    last = bisect.bisect_left(done, end)
    around = done[first : last + 1]
    return max((b - a for a, b in zip(around, around[1:], strict=False)), default=0.0) * 1000


def _client_pause(
    load: Load, tenant_id: int, run: MoveRun, before: tuple[float, float]
) -> tuple[float, float, float, float]:
    """The tenant's longest gap between successful writes around the move and before it,
    and its longest write and longest request of any kind sent during the move, in ms."""
    writes = [r for r in load.requests if r.tenant == tenant_id and r.kind != "read"]
    done = sorted(r.ended for r in writes if r.ok)
    # Before: within the quiet window only (not reaching into the move).
    quiet = [t for t in done if before[0] <= t < before[1]]
    during = [r.seconds for r in writes if run.posted <= r.started < run.ended]
    any_kind = [r.seconds for r in load.of({tenant_id}, run.posted, run.ended)]
    return (
        _longest_gap(done, run.posted, run.ended),
        _longest_gap(quiet, before[0], before[1]),
        max(during, default=0.0) * 1000,
        max(any_kind, default=0.0) * 1000,
    )


def figures(
    load: Load, tenant_id: int, others: set[int], run: MoveRun, before: tuple[float, float]
) -> list[Figure]:
    """The move's own figures: its outcome, the write pause two ways, the others' p95."""
    record = run.record
    pause = record.get("write_pause_ms")
    gap_ms, usual_ms, longest_ms, slowest_ms = _client_pause(load, tenant_id, run, before)
    quiet = load.of(others, *before)
    copying = load.of(others, run.posted, run.copied)
    ratio = p95_ms(copying) / p95_ms(quiet) if quiet and copying else 0.0
    return [
        Figure(
            run.label,
            f"to {run.to}: {record.get('state')}, {record.get('rows_copied') or 0:,} rows copied "
            f"in {run.copied - run.posted:.1f} s, {run.ended - run.posted:.1f} s to done"
            + (f" (error: {record['error']})" if record.get("error") else ""),
            "done",
            run.done,
        ),
        Figure(
            f"{run.label} write pause",
            f"{pause if pause is not None else '-'} ms measured by the move",
            f"<= {MAX_PAUSE_MS} ms",
            pause is not None and pause <= MAX_PAUSE_MS,
        ),
        Figure(
            f"{run.label} client write gap",
            f"longest gap between the tenant's successful writes {gap_ms:.0f} ms (before the "
            f"moves: {usual_ms:.0f} ms); longest single write {longest_ms:.0f} ms, longest "
            f"request of any kind {slowest_ms:.0f} ms",
            f"gap <= {MAX_PAUSE_MS} ms",
            gap_ms <= MAX_PAUSE_MS,
        ),
        Figure(
            f"{run.label} others p95",
            f"{ratio:.2f}x: {p95_ms(copying):.1f} ms during the copy ({len(copying)} requests, "
            f"{run.copied - run.posted:.1f} s) / {p95_ms(quiet):.1f} ms before "
            f"({len(quiet)} requests, {before[1] - before[0]:.1f} s)",
            f"<= {MAX_P95_RATIO:.1f}x",
            0 < ratio <= MAX_P95_RATIO,
        ),
    ]


def when(request: Request, runs: list[MoveRun]) -> str:
    """A failed request's detail, with when it was sent against the nearest move's end."""
    if not runs:
        return request.detail
    nearest = min(runs, key=lambda run: abs(request.started - run.ended))
    return (
        f"{request.detail.strip()} (sent {request.started - nearest.ended:+.2f} s from the end "
        f"of {nearest.label}, answered in {request.seconds * 1000:.0f} ms)"
    )


def not_tried(label: str, why: str) -> list[Figure]:
    """A move's figures when it was not attempted: it counts as failed."""
    return [
        Figure(label, f"not attempted: {why}", "done", False),
        *(Figure(f"{label}{part}", "not measured") for part in PARTS),
    ]
