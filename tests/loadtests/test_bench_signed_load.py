"""The bench's load straight to the users service: every request carries a signed context
whose nonce the service accepts once, so each generator must send each prepared request
once, and wrk must build more when a round outruns what was prepared."""

from __future__ import annotations

import secrets as tokens

import httpx
import pytest

from bench import wrk_requests
from bench.generator import run_requests
from bench.http_load import BenchRequestFailed
from bench.proxying import signed_direct
from kit.procs import ServiceProcess
from kit.testing import ExternalService, Secrets


@pytest.fixture(scope="module")
def tenant_user(admin: httpx.Client, gateway: ServiceProcess | ExternalService) -> tuple[int, int]:
    created = admin.post(
        "/admin/tenants",
        json={"name": f"bench-{tokens.token_hex(4)}", "rate_limit_per_second": 100_000},
    )
    assert created.status_code == 201, created.text
    tenant = created.json()
    user = httpx.post(
        f"{gateway.url}/users",
        headers={"Authorization": f"Bearer {tenant['api_key']}"},
        json={"name": "Benched"},
        timeout=10,
    )
    assert user.status_code == 201, user.text
    return int(tenant["id"]), int(user.json()["id"])


def test_signed_reads_straight_to_the_service_are_each_accepted(
    users_service: ServiceProcess,
    secrets: Secrets,
    tenant_user: tuple[int, int],
    load_generator: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tenant_id, user_id = tenant_user
    # wrk: 20 prepared requests for a 1 s round, which it sends within milliseconds; it must
    # prepare more rather than resend a used nonce (refused: the last test).
    monkeypatch.setattr(wrk_requests, "FIRST_RATE", 20)
    factory = signed_direct(secrets.signing_secret, tenant_id, [user_id])

    sample = run_requests(users_service.url, factory, concurrency=2, seconds=1, requests=30)

    assert sample.operations > 20 if load_generator == "wrk" else sample.operations == 30
    assert 0 < sample.percentile(0.50) <= sample.percentile(0.99)


def test_a_replayed_signature_fails_the_round(
    users_service: ServiceProcess,
    secrets: Secrets,
    tenant_user: tuple[int, int],
    load_generator: str,
) -> None:
    tenant_id, user_id = tenant_user
    signed = signed_direct(secrets.signing_secret, tenant_id, [user_id])(0)

    with pytest.raises(BenchRequestFailed):
        run_requests(users_service.url, lambda i: signed, concurrency=2, seconds=1, requests=10)
