"""Observers that run beside an export or a purge, each in a thread of its own.

- `RssSampler`: a process's resident memory, from /proc, every 50 ms.
- `XactSampler`: every open transaction of the database, from pg_stat_activity (as the
  superuser, who sees every role's), every 10 ms: how long each one stayed open.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Self

import psycopg2


class _Sampler:
    """A daemon thread calling `sample()` every `interval` seconds between start and stop."""

    interval = 0.05

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self.error: BaseException | None = None

    def sample(self) -> None:
        raise NotImplementedError

    def _loop(self) -> None:
        try:
            while not self._stop.is_set():
                self.sample()
                self._stop.wait(self.interval)
        except BaseException as exc:  # reported by stop(): a blind sampler measures nothing
            self.error = exc

    def __enter__(self) -> Self:
        self.sample()  # the first figure before anything is measured
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        if self.error is not None and kind is None:
            raise RuntimeError(f"{type(self).__name__} failed: {self.error}") from self.error


class RssSampler(_Sampler):
    """Resident set size of one process (MB): the first sample, the peak, how many."""

    def __init__(self, pid: int) -> None:
        super().__init__()
        self._status = Path(f"/proc/{pid}/status")
        self.samples: list[float] = []

    def sample(self) -> None:
        for line in self._status.read_text().splitlines():
            if line.startswith("VmRSS:"):
                self.samples.append(int(line.split()[1]) / 1024)  # kB
                return

    @property
    def first_mb(self) -> float:
        return self.samples[0]

    @property
    def peak_mb(self) -> float:
        return max(self.samples)


_OPEN = """
SELECT pid, application_name, xact_start, clock_timestamp() - xact_start,
       state LIKE 'idle in transaction%' AND (backend_xid IS NOT NULL OR backend_xmin IS NOT NULL),
       query
FROM pg_stat_activity
WHERE datname = current_database() AND pid <> pg_backend_pid() AND xact_start IS NOT NULL
"""


@dataclass(slots=True)
class Transaction:
    """One transaction seen open: who, for how long at least, and what it held."""

    pid: int
    application: str
    seconds: float = 0.0
    # An xid or a snapshot (xmin) kept while idle between statements: what holds back
    # VACUUM. An idle transaction with neither only keeps its locks (here: an advisory
    # lock). While a statement runs it always has a snapshot: those samples do not count.
    held_xid_or_snapshot: bool = False
    queries: set[str] = field(default_factory=set)


class XactSampler(_Sampler):
    """Every transaction open in the database, sampled every 10 ms: its longest age."""

    interval = 0.01

    def __init__(self, owner_url: str) -> None:
        super().__init__()
        self._conn = psycopg2.connect(owner_url, application_name="lifecycle-xact-sampler")
        self._conn.autocommit = True
        self.seen: dict[tuple[int, object], Transaction] = {}
        self.samples = 0

    def sample(self) -> None:
        with self._conn.cursor() as cur:
            cur.execute(_OPEN)
            rows = cur.fetchall()
        self.samples += 1
        for pid, application, started, age, held, query in rows:
            seen = self.seen.setdefault((pid, started), Transaction(pid, application or ""))
            seen.seconds = max(seen.seconds, age.total_seconds())
            seen.held_xid_or_snapshot |= bool(held)
            seen.queries.add(" ".join(str(query).split())[:80])

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            super().__exit__(kind, exc, tb)
        finally:
            self._conn.close()

    def of(self, application: str) -> list[Transaction]:
        """The transactions of backends with this application_name."""
        return [t for t in self.seen.values() if t.application == application]
