"""Through the gateway against straight to the users service (and against nginx, if present)."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from bench.generator import http_round
from bench.http_load import RequestFactory
from bench.measure import Comparison, Target, figures, interleaved
from bench.nginx import NginxError, nginx_binary, nginx_proxy
from bench.settings import Scale
from bench.stack import HttpStack
from services.tenancy.signing import sign_headers

SEED_USERS = 50
# Issue 10: Kong keeps about 0.72x of its bare throughput with key-auth and rate limiting on.
GATEWAY_TARGET = Target("throughput", at_least=True, value=0.75)


@dataclass(frozen=True, slots=True)
class BenchTenant:
    """The tenant every HTTP comparison reads as: its id, API key and users' ids."""

    id: int
    api_key: str
    user_ids: list[int]


def _create_tenant(stack: HttpStack, placement: str) -> tuple[int, str, list[int]]:
    admin = {"Authorization": f"Bearer {stack.admin_token}"}
    with httpx.Client(base_url=stack.gateway_url, timeout=10) as client:
        created = client.post(
            "/admin/tenants",
            headers=admin,
            # No in-flight cap either: the latency bench runs 32 connections for this tenant.
            json={
                "name": f"bench-{secrets.token_hex(4)}",
                "rate_limit_per_second": 1_000_000,
                "max_in_flight": 0,
                "placement": placement,
            },
        )
        created.raise_for_status()
        tenant = created.json()
        auth = {"Authorization": f"Bearer {tenant['api_key']}"}
        ids = []
        for n in range(SEED_USERS):
            made = client.post("/users", headers=auth, json={"name": f"Bench user {n}"})
            made.raise_for_status()
            ids.append(int(made.json()["id"]))
    return int(tenant["id"]), str(tenant["api_key"]), ids


@contextmanager
def bench_tenant(stack: HttpStack, placement: str = "shared") -> Iterator[BenchTenant]:
    """A tenant with limits no bench reaches and 50 users in `placement`, deleted afterwards."""
    tenant_id, api_key, ids = _create_tenant(stack, placement)
    try:
        yield BenchTenant(tenant_id, api_key, ids)
    finally:
        _delete_tenant(stack, tenant_id)


def _delete_tenant(stack: HttpStack, tenant_id: int) -> None:
    with httpx.Client(base_url=stack.gateway_url, timeout=10) as client:
        client.delete(
            f"/admin/tenants/{tenant_id}",
            params={"purge": "true"},
            headers={"Authorization": f"Bearer {stack.admin_token}"},
        )


def via_gateway(api_key: str, ids: list[int]) -> RequestFactory:
    """GET /users/{id} as a client of the gateway sends it."""
    headers = {"Authorization": f"Bearer {api_key}"}
    return lambda i: (f"/users/{ids[i % len(ids)]}", headers)


def signed_direct(secret: str, tenant_id: int, ids: list[int]) -> RequestFactory:
    """The same request with the signed tenant context the gateway would have added."""
    run = secrets.token_hex(4)

    def make(i: int) -> tuple[str, dict[str, str]]:
        path = f"/users/{ids[i % len(ids)]}"
        # A fresh nonce each time: the service accepts each signed request once.
        headers = sign_headers(
            secret,
            destination="/users",
            tenant_id=tenant_id,
            request_id=f"bench-{run}-{i}",
            method="GET",
            target=path,
        )
        return path, headers

    return make


def compare_proxies(
    stack: HttpStack, tenant: BenchTenant, *, scale: Scale, workdir: Path, bare_hop_url: str
) -> list[Comparison | str]:
    """Gateway / direct, split by the bare Python hop (bench/barehop.py) into what the hop
    and what the gateway's work cost; gateway / nginx (or why nginx was skipped)."""
    tenant_id, api_key, ids = tenant.id, tenant.api_key, tenant.user_ids
    # A factory each: the service accepts each signed request once, whichever way it came.
    direct = signed_direct(stack.signing_secret, tenant_id, ids)
    via_hop = signed_direct(stack.signing_secret, tenant_id, ids)
    targets = {
        "gateway": http_round(stack.gateway_url, via_gateway(api_key, ids), scale),
        "direct": http_round(stack.users_url, direct, scale),
        "bare hop": http_round(bare_hop_url, via_hop, scale),
    }
    binary = nginx_binary()
    skipped = "nginx not installed, skipped"
    with ExitStack() as running:
        if binary is not None:
            try:
                url = running.enter_context(
                    nginx_proxy(binary, upstream_url=stack.users_url, workdir=workdir / "nginx")
                )
            except NginxError as exc:
                skipped = f"{exc}, skipped"
            else:
                nginx = signed_direct(stack.signing_secret, tenant_id, ids)
                targets["nginx"] = http_round(url, nginx, scale)
        samples = interleaved(targets, rounds=scale.http_rounds)
    results = {name: figures(name, s) for name, s in samples.items()}
    lines: list[Comparison | str] = [
        Comparison(
            "gateway vs direct to users service",
            results["gateway"],
            results["direct"],
            target=GATEWAY_TARGET,
        ),
        Comparison("bare Python hop vs direct", results["bare hop"], results["direct"]),
        Comparison("gateway vs bare Python hop", results["gateway"], results["bare hop"]),
    ]
    if "nginx" in results:
        lines.append(
            Comparison("gateway vs nginx proxy_pass", results["gateway"], results["nginx"])
        )
    else:
        lines.append(f"SKIPPED gateway vs nginx proxy_pass: {skipped}")
    return lines
