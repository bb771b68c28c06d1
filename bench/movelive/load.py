"""Per-tenant load through the gateway, every request and every acknowledged write kept.

Each tenant gets a share of `rate` by Zipf weight (1/n for the n-th), spread over a few
lanes. A lane is one client doing one request at a time at its pace (it skips, never
bursts, after a held request): a read of one of the tenant's seed users, or a write of
its own users (create, rename, delete). Owning its ids keeps every acknowledged write
unambiguous: no two requests touch one user at the same time, so the ledger (id -> name
as last acknowledged) is exactly what the database must hold when the load stops.

The tenants named as probed get one more lane that only writes, PROBE_RATE a second: the
Zipf share alone leaves a second between one tenant's writes now and then, too coarse to
see a pause of a few hundred milliseconds from the client side.
"""

from __future__ import annotations

import asyncio
import json
import random
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import aiohttp

READ_SHARE = 0.7  # the rest are writes: half creates, a third renames, a sixth deletes
LANES_OF_HEAVIEST = 4
PROBE_RATE = 10.0


@dataclass(frozen=True, slots=True)
class LoadTenant:
    label: str  # tenant-01
    id: int
    api_key: str
    read_ids: Sequence[int]  # users that exist for the whole run (never written by the load)
    weight: float


@dataclass(frozen=True, slots=True)
class Request:
    tenant: int
    kind: str  # read, create, rename, delete
    started: float  # time.monotonic()
    seconds: float
    ok: bool
    detail: str = ""  # status and body start of a failure

    @property
    def ended(self) -> float:
        return self.started + self.seconds


@dataclass(slots=True)
class Ledger:
    """One tenant's users as the load's acknowledged writes left them."""

    rows: dict[int, str] = field(default_factory=dict)  # id -> name
    acknowledged: int = 0  # writes answered 201/200/204
    # Ids (and names of creates) whose write got no clear answer: either outcome is right.
    unsure_ids: set[int] = field(default_factory=set)
    unsure_names: set[str] = field(default_factory=set)


def zipf(count: int) -> list[float]:
    """Weights 1/n, n = 1..count, summing to 1."""
    raw = [1.0 / n for n in range(1, count + 1)]
    return [w / sum(raw) for w in raw]


class Load:
    """The load's lanes, in an event loop on a thread of its own, between enter and exit."""

    def __init__(
        self,
        gateway_url: str,
        tenants: list[LoadTenant],
        *,
        rate: float,
        probed: frozenset[int] = frozenset(),
    ) -> None:
        self._url, self._tenants, self._rate, self._probed = gateway_url, tenants, rate, probed
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)
        self.requests: list[Request] = []
        self.ledgers = {t.id: Ledger() for t in tenants}
        self.error: BaseException | None = None

    def _lanes(self, tenant: LoadTenant) -> int:
        heaviest = max(t.weight for t in self._tenants)
        return max(1, round(LANES_OF_HEAVIEST * tenant.weight / heaviest))

    async def _run(self) -> None:
        timeout = aiohttp.ClientTimeout(total=30)
        try:
            async with aiohttp.ClientSession(self._url, timeout=timeout) as session:
                lanes = []
                for tenant in self._tenants:
                    count = self._lanes(tenant)
                    pace = self._rate * tenant.weight / count
                    for n in range(count):
                        lanes.append(self._lane(session, tenant, n, pace))
                    if tenant.id in self._probed:
                        lanes.append(self._lane(session, tenant, count, PROBE_RATE, probe=True))
                await asyncio.gather(*lanes)
        except BaseException as exc:  # reported by __exit__: a dead load measures nothing
            self.error = exc

    async def _lane(
        self,
        session: aiohttp.ClientSession,
        tenant: LoadTenant,
        lane: int,
        pace: float,
        *,
        probe: bool = False,
    ) -> None:
        pick = random.Random(f"{tenant.id}-{lane}")  # the load's shape, not a secret
        headers = {"Authorization": f"Bearer {tenant.api_key}"}
        ledger = self.ledgers[tenant.id]
        own: list[int] = []
        n, due = 0, time.monotonic()
        while not self._stop.is_set():
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            due = max(due + 1 / pace, time.monotonic())  # no burst after a held request
            n += 1
            roll = pick.random()
            if probe:  # writes only, in the same proportions
                roll = READ_SHARE + roll * (1 - READ_SHARE)
            if roll < READ_SHARE:
                user = pick.choice(tenant.read_ids)
                await self._send(session, tenant, "read", "GET", f"/users/{user}", headers)
                continue
            write = (roll - READ_SHARE) / (1 - READ_SHARE)
            if write < 0.5 or not own:
                name = f"{tenant.label} lane {lane} user {n}"
                body = await self._send(
                    session, tenant, "create", "POST", "/users", headers, {"name": name}
                )
                if body is None:
                    ledger.unsure_names.add(name)
                else:
                    own.append(int(body["id"]))
                    ledger.rows[own[-1]] = name
            elif write < 0.83:
                user = pick.choice(own)
                name = f"{tenant.label} lane {lane} renamed {n}"
                path = f"/users/{user}"
                if await self._send(
                    session, tenant, "rename", "PATCH", path, headers, {"name": name}
                ):
                    ledger.rows[user] = name
                else:
                    ledger.unsure_ids.add(user)
            else:
                user = own.pop(pick.randrange(len(own)))
                if await self._send(session, tenant, "delete", "DELETE", f"/users/{user}", headers):
                    del ledger.rows[user]
                else:
                    ledger.unsure_ids.add(user)

    async def _send(
        self,
        session: aiohttp.ClientSession,
        tenant: LoadTenant,
        kind: str,
        method: str,
        path: str,
        headers: dict[str, str],
        body: dict[str, str] | None = None,
    ) -> dict[str, Any] | None:
        """The request, recorded; its JSON body ({} for 204) when it succeeded, else None."""
        started = time.monotonic()
        try:
            async with session.request(method, path, headers=headers, json=body) as response:
                text = await response.text()
                status = response.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            status, text = 0, f"{type(exc).__name__}: {exc}"
        seconds = time.monotonic() - started
        ok = status in (200, 201, 204)
        detail = "" if ok else f"{method} {path} {status} {text[:120]}"
        self.requests.append(Request(tenant.id, kind, started, seconds, ok, detail))
        if not ok:
            return None
        if kind != "read":
            self.ledgers[tenant.id].acknowledged += 1
        if status == 204:
            return {}
        loaded = json.loads(text)
        return loaded if isinstance(loaded, dict) else {}

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join(timeout=60)
        if self.error is not None and kind is None:
            raise RuntimeError(f"the load failed: {self.error!r}") from self.error

    def of(self, tenant_ids: set[int], start: float, end: float) -> list[Request]:
        """The requests of these tenants sent in [start, end)."""
        return [r for r in self.requests if r.tenant in tenant_ids and start <= r.started < end]
