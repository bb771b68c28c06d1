"""Follow the children's log files and echo each new line as `name | line` on our stdout."""

from __future__ import annotations

import sys
import threading
from pathlib import Path
from typing import TextIO


class LogFollower:
    """A thread that tails log files from the moment each is added (older runs stay unsaid)."""

    def __init__(self, out: TextIO = sys.stdout, interval: float = 0.1) -> None:
        self._out = out
        self._interval = interval
        self._files: dict[Path, tuple[str, int]] = {}
        self._partial: dict[Path, bytes] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="log-follower", daemon=True)
        self._width = 8

    def add(self, name: str, path: Path) -> None:
        """Echo what `path` gets from now on, prefixed with `name`."""
        offset = path.stat().st_size if path.exists() else 0
        with self._lock:
            self._files[path] = (name, offset)
            self._width = max(self._width, len(name))

    def start(self) -> None:
        """Start echoing in the background."""
        self._thread.start()

    def stop(self) -> None:
        """Echo what is left, then end the thread."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(2)
        self._drain()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self._drain()

    def _drain(self) -> None:
        with self._lock:
            for path, (name, offset) in list(self._files.items()):
                try:
                    with open(path, "rb") as f:
                        f.seek(offset)
                        data = f.read()
                except FileNotFoundError:
                    continue
                if not data:
                    continue
                self._files[path] = (name, offset + len(data))
                data = self._partial.pop(path, b"") + data
                *lines, rest = data.split(b"\n")
                if rest:
                    self._partial[path] = rest
                for line in lines:
                    text = line.decode("utf-8", errors="replace").rstrip("\r")
                    self._out.write(f"{name:<{self._width}} | {text}\n")
            self._out.flush()
