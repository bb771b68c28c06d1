"""`python -m kit.run` (what `make run` runs) as a subprocess the tests read and signal."""

from __future__ import annotations

import queue
import signal
import subprocess
import sys
import threading
import time

import psutil

from kit.procs import ROOT


class MakeRun:
    """`python -m kit.run` (what `make run` runs) as a subprocess whose output we read."""

    def __init__(self, env: dict[str, str]) -> None:
        self.lines: list[str] = []
        self._new: queue.Queue[str] = queue.Queue()
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "kit.run"],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            self.lines.append(line.rstrip("\n"))
            self._new.put(line)

    def wait_for(self, needle: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self._new.get(timeout=0.5)
            except queue.Empty:
                assert self.popen.poll() is None, "kit.run exited:\n" + "\n".join(self.lines)
                continue
            if needle in line:
                return line
        raise AssertionError(f"no {needle!r} within {timeout} s:\n" + "\n".join(self.lines))

    def printed(self, prefix: str) -> str:
        found = [line.strip() for line in self.lines if line.strip().startswith(prefix)]
        assert found, f"kit.run printed no {prefix!r}:\n" + "\n".join(self.lines)
        return found[0][len(prefix) :].strip()

    def descendants(self) -> list[psutil.Process]:
        return psutil.Process(self.popen.pid).children(recursive=True)

    def terminate(self) -> int:
        self.popen.send_signal(signal.SIGTERM)
        return self.popen.wait(timeout=10)

    def close(self) -> None:
        """Kill it if still running and release its pipe."""
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait()
        self._reader.join(5)
        assert self.popen.stdout is not None
        self.popen.stdout.close()


def gone(process: psutil.Process) -> bool:
    """True once the process has exited (a zombie counts: it runs nothing)."""
    try:
        return process.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True
