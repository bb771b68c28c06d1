"""A tenant's share of a service's pool, and its statement timeout, against real processes.

The service is `holding_service.py`, built on the shared library like any other service: its
route holds a real PostgreSQL session for as long as the test asks.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from kit.procs import start_service
from kit.testing import Database
from services.tenancy.errors import STATEMENT_TIMEOUT
from services.tenancy.fairshare import OVER_SHARE, OverShare, TenantShares
from services.tenancy.runtime import POOL_CAPACITY
from services.users.config import Settings
from services.users.tests.conftest import SignedClient

# More concurrent requests than the pool has connections, all from one tenant.
GREEDY = POOL_CAPACITY + 4
HOLD_MS = 4000


@pytest.fixture
def holding(
    database: Database, secrets: Any, kit_workdir: Path
) -> Iterator[Callable[..., SignedClient]]:
    """holding(**settings): a holding service process with those settings on top."""
    started: list[Any] = []
    clients: list[httpx.Client] = []

    def start(**settings: str) -> SignedClient:
        service = start_service(
            "holding",
            env={
                "APP_DATABASE_URL": database.app_url,
                "INTERNAL_SIGNING_SECRET": secrets.signing_secret,
                "TENANT_STATEMENT_TIMEOUT_MS": "10000",
                **settings,
            },
            log_dir=kit_workdir / "logs",
            argv=[sys.executable, "-m", "services.users.tests.holding_service"],
        )
        started.append(service)
        client = httpx.Client(base_url=service.url, timeout=15)
        clients.append(client)
        return SignedClient(client, secrets.signing_secret)

    yield start
    for client in clients:
        client.close()
    for service in started:
        service.stop()


def _flood(api: SignedClient, tenant: int, count: int) -> Any:
    """`count` concurrent /hold requests of `tenant`, running in the background."""
    pool = ThreadPoolExecutor(max_workers=count)

    def one(_n: int) -> tuple[int, dict[str, Any], float]:
        started = time.monotonic()
        response = api.request("GET", f"/hold?ms={HOLD_MS}", tenant)
        return response.status_code, response.json(), time.monotonic() - started

    futures = [pool.submit(one, n) for n in range(count)]
    pool.shutdown(wait=False)
    return futures


def _timed(call: Callable[[], httpx.Response]) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = call()
    return response, time.monotonic() - started


def test_a_tenant_over_its_share_gets_503_while_another_tenant_is_served(
    holding: Callable[..., SignedClient], make_tenant: Callable[[], int]
) -> None:
    api = holding()  # defaults: 25 % of the pool, one second of waiting
    greedy, neighbour = make_tenant(), make_tenant()
    futures = _flood(api, greedy, GREEDY)
    time.sleep(0.5)
    response, took = _timed(lambda: api.request("GET", "/hold?ms=0", neighbour))
    assert response.status_code == 200 and took < 1.5

    results = [f.result(timeout=30) for f in futures]
    served = [r for r in results if r[0] == 200]
    refused = [r for r in results if r[0] == 503]
    share = POOL_CAPACITY * 25 // 100
    assert len(served) == share and len(refused) == GREEDY - share
    assert {r[1]["detail"] for r in refused} == {OVER_SHARE}
    # Refused after the short wait, not after the others' four seconds of holding.
    assert max(r[2] for r in refused) < HOLD_MS / 1000 - 1


def test_with_fairness_off_one_tenant_can_take_the_whole_pool(
    holding: Callable[..., SignedClient], make_tenant: Callable[[], int]
) -> None:
    # What the share prevents (and what `make load-noisy` compares against).
    api = holding(TENANT_FAIRNESS="off")
    greedy, neighbour = make_tenant(), make_tenant()
    futures = _flood(api, greedy, GREEDY)
    time.sleep(0.5)
    response = api.request("GET", "/hold?ms=0", neighbour)
    assert response.status_code == 503 and response.json() == {"detail": "database unavailable"}
    assert sum(f.result(timeout=30)[0] == 200 for f in futures) >= POOL_CAPACITY


def test_a_statement_beyond_the_timeout_is_cancelled_for_its_tenant_only(
    holding: Callable[..., SignedClient], make_tenant: Callable[[], int]
) -> None:
    api = holding(TENANT_STATEMENT_TIMEOUT_MS="500")
    slow, other = make_tenant(), make_tenant()
    with ThreadPoolExecutor(max_workers=2) as pool:
        cancelled = pool.submit(_timed, lambda: api.request("GET", "/hold?ms=5000", slow))
        time.sleep(0.1)
        served = api.request("GET", "/hold?ms=300", other)
        response, took = cancelled.result(timeout=30)
    assert served.status_code == 200
    assert response.status_code == 503 and response.json() == {"detail": STATEMENT_TIMEOUT}
    assert took < 2.0
    # The cancellation left nothing behind: the tenant's next request is served.
    assert api.request("GET", "/hold?ms=0", slow).status_code == 200


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("TENANT_FAIRNESS", "maybe"),
        ("TENANT_POOL_SHARE_PERCENT", "0"),
        ("TENANT_POOL_WAIT_SECONDS", "-1"),
        ("TENANT_STATEMENT_TIMEOUT_MS", "soon"),
    ],
)
def test_bad_fairness_setting_stops_the_service_with_one_line_naming_it(
    name: str, value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    environ = {
        "DATABASE_URL": "postgresql://o@h/d",
        "INTERNAL_SIGNING_SECRET": "fair-share-tests-secret-0123456789",
        name: value,
    }
    with pytest.raises(SystemExit) as exited:
        Settings.load(environ)
    assert exited.value.code == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith(f"users-service: invalid setting {name}:")


def test_shares_refuse_only_the_tenant_at_its_limit_and_forget_idle_tenants() -> None:
    async def scenario() -> None:
        shares = TenantShares(limit=2, wait_seconds=0.2)
        async with shares.slot(1), shares.slot(1):
            # Tenant 2 is not slowed by tenant 1 being at its limit.
            async with asyncio.timeout(0.1), shares.slot(2):
                pass
            with pytest.raises(OverShare):
                async with shares.slot(1):
                    pass
        # Freed: tenant 1 gets a slot at once again; and nothing is kept per idle tenant
        # (10,000 tenants must not mean 10,000 entries).
        async with asyncio.timeout(0.1), shares.slot(1):
            pass
        assert shares._tenants == {}  # noqa: SLF001

    asyncio.run(scenario())
