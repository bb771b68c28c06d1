"""`make run` keeps its children alive: a crashed one is restarted with backoff (SPEC §2).

Each child is a `Unit` with a way to start it again on the same port and data, so the
rest of the stack keeps running (the gateway answers 503 for a service that is down).
Five crashes of one child within 60 s mean a restart will not help: the stack stops
with one line naming it.
"""

from __future__ import annotations

import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from kit.children import Child

MAX_CRASHES = 5
CRASH_WINDOW_SECONDS = 60.0
FIRST_BACKOFF_SECONDS = 0.5
MAX_BACKOFF_SECONDS = 8.0
POLL_SECONDS = 0.2


@dataclass(eq=False)
class Unit:
    """One supervised child and how to start it again (same port, same data)."""

    name: str
    child: Child
    restart: Callable[[], Child]
    crashes: deque[float] = field(default_factory=deque)

    def record_crash(self, now: float) -> int:
        """Remember a crash; how many fell within the window, this one included."""
        self.crashes.append(now)
        while self.crashes and now - self.crashes[0] > CRASH_WINDOW_SECONDS:
            self.crashes.popleft()
        return len(self.crashes)


def backoff(crashes: int) -> float:
    """Seconds to wait before restart number `crashes`: 0.5, 1, 2, 4, capped at 8."""
    return float(min(MAX_BACKOFF_SECONDS, FIRST_BACKOFF_SECONDS * 2 ** (crashes - 1)))


class Supervisor:
    """Watches units in the order they were added; restarts the ones that exit."""

    def __init__(self, say: Callable[[str], None] | None = None) -> None:
        self.units: list[Unit] = []
        self._say = say or (lambda line: print(line, file=sys.stderr, flush=True))

    def add(self, name: str, child: Child, restart: Callable[[], Child]) -> None:
        """Supervise `child`, started again by `restart()` when it exits."""
        self.units.append(Unit(name=name, child=child, restart=restart))

    def children(self, names: set[str]) -> list[Child]:
        """The current children of the named units, in the order they were added."""
        return [u.child for u in self.units if u.name in names]

    def watch(self) -> str:
        """Block until a unit crashes too often; the one line that says which."""
        while True:
            for unit in self.units:
                if not unit.child.alive():
                    stop = self._recover(unit)
                    if stop is not None:
                        return stop
            time.sleep(POLL_SECONDS)

    def _recover(self, unit: Unit) -> str | None:
        """Restart `unit` until it runs again; a stop line once it crashed too often."""
        while True:
            status = unit.child.popen.returncode
            # Whatever the dead leader left in its group (a server's workers) goes too.
            unit.child.stop(timeout=1)
            count = unit.record_crash(time.monotonic())
            if count >= MAX_CRASHES:
                return (
                    f"kit: {unit.name} crashed {count} times within "
                    f"{CRASH_WINDOW_SECONDS:.0f} s (last exit status {status}); stopping the stack"
                )
            delay = backoff(count)
            self._say(
                f"kit: {unit.name} exited with {status}; restarting it in {delay:g} s "
                f"(crash {count} of {MAX_CRASHES} allowed within {CRASH_WINDOW_SECONDS:.0f} s)"
            )
            time.sleep(delay)
            try:
                unit.child = unit.restart()
            except Exception as exc:  # a failed start is one more crash, with its reason
                self._say(f"kit: {unit.name} did not start again: {str(exc).splitlines()[0]}")
                continue
            self._say(f"kit: {unit.name} is running again (pid {unit.child.pid})")
            return None
