"""Child processes the kit starts: spawned in their own process group, tracked, always reaped.

Every server and service the kit starts goes through `spawn()`, so one registry knows them all
and `stop_all()` (run at interpreter exit and by the pytest plugin) leaves none behind.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import functools
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

_PR_SET_PDEATHSIG = 1


@dataclass(frozen=True, slots=True)
class RunAs:
    """The unprivileged account a server runs under when the kit itself runs as root."""

    name: str
    uid: int
    gid: int


@dataclass(eq=False)
class Child:
    """One started process: its name, its log file and how it wants to be asked to stop."""

    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path
    stop_signal: int = signal.SIGTERM
    started_at: float = field(default_factory=time.monotonic)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        """True while the process has not exited."""
        return self.popen.poll() is None

    def tail(self, lines: int = 40) -> str:
        """The last lines of the process's output, for error messages."""
        return log_tail(self.log_path, lines)

    def stop(self, timeout: float = 8.0) -> int | None:
        """Ask politely (stop_signal), then SIGKILL the whole process group after `timeout` s."""
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                self.popen.send_signal(self.stop_signal)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                _kill_group(self.popen.pid, signal.SIGKILL)
                self.popen.wait(5)
        # Whatever the leader left in its group (a server's workers) goes with it.
        _kill_group(self.popen.pid, signal.SIGKILL)
        _REGISTRY.discard(self)
        return self.popen.returncode


_REGISTRY: set[Child] = set()


def _kill_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def die_with_parent(sig: int = signal.SIGKILL) -> None:
    """Have the kernel send `sig` to this process when its parent dies (Linux; else nothing)."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, sig)


def _die_with_parent(parent: int) -> None:
    """In the child, before exec: get SIGKILLed when the kit dies, even by SIGKILL."""
    die_with_parent(signal.SIGKILL)
    # The parent may already have died between fork and prctl.
    if os.getppid() != parent:
        os._exit(1)


def spawn(
    name: str,
    argv: Sequence[str],
    *,
    log_path: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    run_as: RunAs | None = None,
    stop_signal: int = signal.SIGTERM,
) -> Child:
    """Start `argv` in a new session with its output appended to `log_path`, and track it."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        popen = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            # Its own session: a terminal's Ctrl-C reaches the kit only, which then stops
            # children in order; and the whole group can be killed at the end.
            start_new_session=True,
            user=run_as.uid if run_as else None,
            group=run_as.gid if run_as else None,
            extra_groups=[] if run_as else None,
            # The kernel ties PDEATHSIG to the spawning *thread*: from any other thread the
            # child would die when that thread ends, so only the main thread asks for it
            # (other spawns are still stopped by stop_all at exit).
            preexec_fn=(
                functools.partial(_die_with_parent, os.getpid())
                if threading.current_thread() is threading.main_thread()
                else None
            ),
        )
    child = Child(name=name, popen=popen, log_path=log_path, stop_signal=stop_signal)
    _REGISTRY.add(child)
    return child


def running() -> list[Child]:
    """Every tracked child, oldest first."""
    return sorted(_REGISTRY, key=lambda c: c.started_at)


def stop_together(group: Sequence[Child], timeout: float) -> None:
    """Ask every child of `group` to stop at once; SIGKILL whatever still runs after `timeout`."""
    for child in group:
        if child.alive():
            with contextlib.suppress(ProcessLookupError):
                child.popen.send_signal(child.stop_signal)
    deadline = time.monotonic() + timeout
    for child in group:
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.popen.wait(max(0.0, deadline - time.monotonic()))
        child.stop(timeout=1)


def stop_all() -> None:
    """Stop every tracked child, newest first (services before the servers they use)."""
    for child in reversed(running()):
        child.stop()


def log_tail(path: Path, lines: int = 40) -> str:
    """The last `lines` lines of a log file ('' when it does not exist)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 64 * 1024))
            data = f.read()
    except FileNotFoundError:
        return ""
    text = data.decode("utf-8", errors="replace")
    return "\n".join(text.splitlines()[-lines:])


def wait_until(
    check: Callable[[], object],
    *,
    timeout: float,
    child: Child | None = None,
    interval: float = 0.1,
) -> bool:
    """Poll `check()` until it is truthy; False on timeout or when `child` exits first."""
    deadline = time.monotonic() + timeout
    while True:
        if check():
            return True
        if child is not None and not child.alive():
            return False
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


atexit.register(stop_all)
