"""Requests sent through the gateway while an export or a purge runs.

- `Writers`: a few clients creating users of one tenant back to back (its writes during
  the export); the ids the service acknowledged are kept.
- `Readers`: GET /users/{id} for other tenants at a fixed rate (open loop: a request
  leaves every 1/rate s whatever the previous ones are doing), each with its start time
  and latency, so p95 can be cut into before / during / after windows.
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass
from types import TracebackType

import aiohttp
import httpx


@dataclass(frozen=True, slots=True)
class Tenant:
    id: int
    api_key: str
    user_ids: list[int]

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}


class Writers:
    """`clients` threads, each POSTing users for `tenant` until the block ends."""

    def __init__(self, gateway_url: str, tenant: Tenant, *, clients: int = 2) -> None:
        self._url, self._tenant = gateway_url, tenant
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._write, daemon=True) for _ in range(clients)]
        self._lock = threading.Lock()
        self.acknowledged: set[int] = set()
        self.failures: list[str] = []

    def _write(self) -> None:
        with httpx.Client(base_url=self._url, headers=self._tenant.headers, timeout=30) as client:
            n = 0
            while not self._stop.is_set():
                n += 1
                made = client.post("/users", json={"name": f"written during export {n}"})
                with self._lock:
                    if made.status_code == 201:
                        self.acknowledged.add(int(made.json()["id"]))
                    else:
                        self.failures.append(f"{made.status_code} {made.text[:120]}")

    def __enter__(self) -> Writers:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=60)


@dataclass(frozen=True, slots=True)
class Answer:
    started: float  # time.monotonic()
    seconds: float
    status: int


class Readers:
    """GET /users/{id} for `tenants` in turn, `rate` a second, in a thread of its own."""

    def __init__(self, gateway_url: str, tenants: list[Tenant], *, rate: float) -> None:
        self._url, self._tenants, self._rate = gateway_url, tenants, rate
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)
        self.answers: list[Answer] = []

    async def _one(self, session: aiohttp.ClientSession, i: int) -> None:
        tenant = self._tenants[i % len(self._tenants)]
        user = tenant.user_ids[(i // len(self._tenants)) % len(tenant.user_ids)]
        started = time.monotonic()
        try:
            async with session.get(f"/users/{user}", headers=tenant.headers) as response:
                await response.read()
                status = response.status
        except (aiohttp.ClientError, TimeoutError):
            status = 0
        self.answers.append(Answer(started, time.monotonic() - started, status))

    async def _run(self) -> None:
        timeout = aiohttp.ClientTimeout(total=30)
        async with aiohttp.ClientSession(self._url, timeout=timeout) as session:
            pending: set[asyncio.Task[None]] = set()
            start, i = time.monotonic(), 0
            while not self._stop.is_set():
                task = asyncio.create_task(self._one(session, i))
                pending.add(task)
                task.add_done_callback(pending.discard)
                i += 1
                await asyncio.sleep(max(0.0, start + i / self._rate - time.monotonic()))
            if pending:
                await asyncio.wait(pending)

    def __enter__(self) -> Readers:
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join(timeout=60)

    def window(self, start: float, end: float) -> list[Answer]:
        """The answers to requests sent in [start, end)."""
        return [a for a in self.answers if start <= a.started < end]


def p95_ms(answers: list[Answer]) -> float:
    """Nearest-rank 95th percentile latency, in milliseconds (0 with no answers)."""
    ordered = sorted(a.seconds for a in answers)
    if not ordered:
        return 0.0
    rank = max(0, min(len(ordered) - 1, round(0.95 * len(ordered) + 0.5) - 1))
    return ordered[rank] * 1000.0
