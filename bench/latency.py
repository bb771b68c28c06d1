"""The gateway's added latency: its median over going direct, at concurrency 1 and 32.

At concurrency 1 nothing queues in the stack, so the difference of medians is the gateway's
own work per request plus its hops (client -> gateway -> Redis -> gateway -> service and
back). On a box whose load average exceeds its cores, each extra hop also waits for a CPU
slice, so the difference swings with the load. The gateway's CPU time per request (from
/proc, own stack only) is printed beside it: its own work, whatever the load.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

import psutil

from bench.generator import run_requests
from bench.http_load import RequestFactory
from bench.measure import Figures, Sample, figures, interleaved
from bench.proxying import BenchTenant, signed_direct, via_gateway
from bench.settings import Scale
from bench.stack import HttpStack

# Issue 10's goal at concurrency 1; at 32 there is none (queueing dominates), only the figure.
TARGET_MS = 0.5
CONCURRENCIES = (1, 32)


@dataclass(frozen=True, slots=True)
class AddedLatency:
    """Gateway and direct figures at one concurrency, and the gateway's added median."""

    concurrency: int
    gateway: Figures
    direct: Figures
    target_ms: float | None
    # The same request through a bare Python hop (bench/barehop.py): a hop's own floor.
    bare_hop: Figures | None = None
    # Median over rounds of the gateway process's CPU time per request; None when attached.
    gateway_cpu_ms: float | None = None
    load_average: float | None = None  # 1-minute, when these rounds ended

    @property
    def added_ms(self) -> float:
        """Median through the gateway minus median straight to the service."""
        return self.gateway.p50_ms - self.direct.p50_ms

    def __str__(self) -> str:
        verdict = ""
        if self.target_ms is not None:
            met = "met" if self.added_ms <= self.target_ms else "MISSED"
            verdict = f" [target <= {self.target_ms:.2f} ms: {met}]"
        own = ""
        if self.gateway_cpu_ms is not None:
            own = (
                f"\n    gateway CPU per request: {self.gateway_cpu_ms:.2f} ms (its own work; "
                f"the rest is hops and waiting for a CPU, load average {self.load_average:.1f})"
            )
        if self.bare_hop is not None:
            own += (
                f"\n    bare Python hop (uvicorn + aiohttp, no checks) p50 over direct: "
                f"{self.bare_hop.p50_ms - self.direct.p50_ms:.2f} ms "
                f"({self.bare_hop.describe('req')})"
            )
        return (
            f"ADDED gateway p50 over direct at concurrency {self.concurrency}: "
            f"{self.added_ms:.2f} ms (p50 {self.gateway.p50_ms:.2f} ms vs "
            f"{self.direct.p50_ms:.2f} ms){verdict}\n"
            f"    {self.gateway.describe('req')}\n"
            f"    {self.direct.describe('req')}{own}"
        )


def _cpu_seconds(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


def _timed(run: Callable[[], Sample], pid: int, into: list[float]) -> Callable[[], Sample]:
    """`run`, noting the process's CPU seconds per request of each round into `into`."""

    def timed() -> Sample:
        before = _cpu_seconds(pid)
        sample = run()
        into.append((_cpu_seconds(pid) - before) / sample.operations)
        return sample

    return timed


def _at(
    stack: HttpStack,
    tenant: BenchTenant,
    *,
    concurrency: int,
    requests: int,
    seconds: float,
    rounds: int,
    bare_hop_url: str,
) -> AddedLatency:
    def target(url: str, factory: RequestFactory) -> Callable[[], Sample]:
        return lambda: run_requests(
            url, factory, concurrency=concurrency, seconds=seconds, requests=requests
        )

    cpu_per_request: list[float] = []
    gateway = target(stack.gateway_url, via_gateway(tenant.api_key, tenant.user_ids))
    if stack.gateway_pid is not None:
        gateway = _timed(gateway, stack.gateway_pid, cpu_per_request)
    signed = signed_direct(stack.signing_secret, tenant.id, tenant.user_ids)
    samples = interleaved(
        {
            "gateway": gateway,
            "direct": target(stack.users_url, signed),
            "bare hop": target(bare_hop_url, signed),
        },
        rounds=rounds,
    )
    # The warm-up round (the first) pays for connections and caches: not counted.
    measured = sorted(cpu_per_request[1:])
    return AddedLatency(
        concurrency=concurrency,
        gateway=figures("gateway", samples["gateway"]),
        direct=figures("direct", samples["direct"]),
        bare_hop=figures("bare hop", samples["bare hop"]),
        target_ms=TARGET_MS if concurrency == 1 else None,
        gateway_cpu_ms=measured[len(measured) // 2] * 1000 if measured else None,
        load_average=os.getloadavg()[0],
    )


def added_latency(
    stack: HttpStack, tenant: BenchTenant, *, scale: Scale, bare_hop_url: str
) -> list[AddedLatency]:
    """Gateway vs direct (and the bare hop) GET /users/{id}, interleaved, at each concurrency."""
    # Three rounds at most: medians of latency settle sooner than throughput's.
    rounds = min(3, scale.http_rounds)
    return [
        _at(
            stack,
            tenant,
            concurrency=c,
            requests=scale.latency_requests * (1 if c == 1 else 2),
            seconds=scale.tutorial_seconds,
            rounds=rounds,
            bare_hop_url=bare_hop_url,
        )
        for c in CONCURRENCIES
    ]
