"""The gateway's added latency: its median over going direct, at concurrency 1 and 32.

At concurrency 1 nothing queues, so the difference of medians is the gateway's own work
per request (plus one loopback hop); at 32 it includes waiting for a share of the CPU.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from bench.http_load import RequestFactory, run_http
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

    @property
    def added_ms(self) -> float:
        """Median through the gateway minus median straight to the service."""
        return self.gateway.p50_ms - self.direct.p50_ms

    def __str__(self) -> str:
        verdict = ""
        if self.target_ms is not None:
            met = "met" if self.added_ms <= self.target_ms else "MISSED"
            verdict = f" [target <= {self.target_ms:.2f} ms: {met}]"
        return (
            f"ADDED gateway p50 over direct at concurrency {self.concurrency}: "
            f"{self.added_ms:.2f} ms (p50 {self.gateway.p50_ms:.2f} ms vs "
            f"{self.direct.p50_ms:.2f} ms){verdict}\n"
            f"    {self.gateway.describe('req')}\n"
            f"    {self.direct.describe('req')}"
        )


def added_latency(stack: HttpStack, tenant: BenchTenant, *, scale: Scale) -> list[AddedLatency]:
    """Gateway vs direct GET /users/{id}, interleaved rounds, at each concurrency."""
    results = []
    for concurrency in CONCURRENCIES:
        requests = scale.latency_requests * (1 if concurrency == 1 else 2)

        def target(
            url: str, factory: RequestFactory, c: int = concurrency, n: int = requests
        ) -> Callable[[], Sample]:
            return lambda: run_http(url, factory, requests=n, concurrency=c)

        samples = interleaved(
            {
                "gateway": target(stack.gateway_url, via_gateway(tenant.api_key, tenant.user_ids)),
                "direct": target(
                    stack.users_url,
                    signed_direct(stack.signing_secret, tenant.id, tenant.user_ids),
                ),
            },
            # Three rounds at most: medians of latency settle sooner than throughput's.
            rounds=min(3, scale.http_rounds),
        )
        results.append(
            AddedLatency(
                concurrency=concurrency,
                gateway=figures("gateway", samples["gateway"]),
                direct=figures("direct", samples["direct"]),
                target_ms=TARGET_MS if concurrency == 1 else None,
            )
        )
    return results
