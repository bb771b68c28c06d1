"""The load test's tenants: unequal weights, which simulated user serves which tenant, and
their creation and removal through the gateway's admin API."""

from __future__ import annotations

import json
import secrets
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx


@dataclass(frozen=True, slots=True)
class LoadTenant:
    """A tenant created for the run, with its first API key."""

    label: str  # "tenant-03": the name in every statistic, stable across runs
    id: int
    api_key: str
    weight: float
    rate_limit_per_second: int


class AdminError(Exception):
    """The admin API refused or failed a request the load test needs."""


def zipf_weights(count: int) -> list[float]:
    """Weights 1, 1/2, 1/3...: a few large tenants and a long tail of small ones."""
    return [1.0 / rank for rank in range(1, count + 1)]


def user_quotas(weights: list[float], users: int) -> list[int]:
    """How many simulated users each tenant gets: at least one each, the rest by weight."""
    quotas = [1] * len(weights)
    extra = users - len(weights)
    if extra <= 0:
        return quotas
    total = sum(weights)
    shares = [extra * w / total for w in weights]
    floors = [int(s) for s in shares]
    # Largest remainder: the quotas add up to exactly `users`.
    by_remainder = sorted(range(len(weights)), key=lambda i: shares[i] - floors[i], reverse=True)
    for i in by_remainder[: extra - sum(floors)]:
        floors[i] += 1
    return [q + f for q, f in zip(quotas, floors, strict=True)]


def assignment_order(quotas: list[int]) -> list[int]:
    """Tenant index for the 1st, 2nd, ... user spawned.

    Every tenant comes once first, so even a short prefix (few users, or one worker of
    several) covers all of them; the rest interleave by smooth weighted round robin.
    """
    order = list(range(len(quotas)))
    remaining = [q - 1 for q in quotas]
    current = [0] * len(quotas)
    total = sum(remaining)
    for _ in range(total):
        for i, r in enumerate(remaining):
            current[i] += r
        pick = max(range(len(quotas)), key=lambda i: current[i])
        current[pick] -= total
        order.append(pick)
    return order


class AdminClient:
    """The few admin API calls the load test makes."""

    def __init__(self, host: str, token: str) -> None:
        self._client = httpx.Client(
            base_url=host, headers={"Authorization": f"Bearer {token}"}, timeout=10.0
        )

    def __enter__(self) -> AdminClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self._client.close()

    def check(self) -> None:
        """Fail with one clear sentence when the gateway is down or the token is refused."""
        try:
            response = self._client.get("/admin/tenants")
        except httpx.HTTPError as exc:
            raise AdminError(f"no gateway answering at {self._client.base_url} ({exc})") from exc
        if response.status_code == 401:
            raise AdminError(f"the gateway at {self._client.base_url} refuses ADMIN_TOKEN")
        if response.status_code != 200:
            raise AdminError(f"GET /admin/tenants answered {response.status_code}")

    def create(self, *, name: str, rate_limit_per_second: int) -> dict[str, object]:
        """Create one tenant; the answer includes its first API key."""
        response = self._client.post(
            "/admin/tenants", json={"name": name, "rate_limit_per_second": rate_limit_per_second}
        )
        if response.status_code != 201:
            raise AdminError(
                f"POST /admin/tenants answered {response.status_code}: {response.text[:200]}"
            )
        body: dict[str, object] = response.json()
        return body

    def delete(self, tenant_id: int) -> None:
        """Purge a tenant and all its rows now (no grace period); an already gone one is fine."""
        response = self._client.delete(f"/admin/tenants/{tenant_id}", params={"purge": "true"})
        if response.status_code not in (204, 404):
            raise AdminError(f"DELETE /admin/tenants/{tenant_id} answered {response.status_code}")


def create_tenants(admin: AdminClient, *, count: int, rate_limits: list[int]) -> list[LoadTenant]:
    """Create `count` tenants with Zipf weights; names carry a run id so reruns never clash."""
    run_id = secrets.token_hex(3)
    tenants: list[LoadTenant] = []
    try:
        for rank, weight in enumerate(zipf_weights(count), start=1):
            label = f"tenant-{rank:02d}"
            limit = rate_limits[rank - 1]
            body = admin.create(name=f"load-{run_id}-{label}", rate_limit_per_second=limit)
            tenants.append(
                LoadTenant(
                    label=label,
                    id=int(str(body["id"])),
                    api_key=str(body["api_key"]),
                    weight=weight,
                    rate_limit_per_second=limit,
                )
            )
    except Exception:
        delete_tenants(admin, tenants)
        raise
    return tenants


def delete_tenants(admin: AdminClient, tenants: list[LoadTenant]) -> None:
    """Remove the load test's tenants with everything they created."""
    for tenant in tenants:
        admin.delete(tenant.id)


def save_tenants(tenants: list[LoadTenant], path: Path) -> None:
    """Hand tenants (with their keys) to Locust processes; readable by the owner only."""
    path.touch(mode=0o600)
    path.write_text(json.dumps([asdict(t) for t in tenants]))


def load_tenants(path: Path) -> list[LoadTenant]:
    """Read tenants written by save_tenants()."""
    return [LoadTenant(**row) for row in json.loads(path.read_text())]
