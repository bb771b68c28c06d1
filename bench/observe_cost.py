"""What per-tenant metrics and usage accounting cost: the gateway with them on against off."""

from __future__ import annotations

from collections.abc import Callable

from bench.generator import run_requests
from bench.measure import Comparison, Sample, Target, figures, interleaved
from bench.proxying import BenchTenant, via_gateway
from bench.settings import Scale
from bench.stack import HttpStack

# Issue 12: all of it may cost at most 5 % of the gateway's throughput.
METRICS_TARGET = Target("throughput", at_least=True, value=0.95)


def compare_metrics_cost(
    stack: HttpStack, tenant: BenchTenant, *, scale: Scale
) -> Comparison | str:
    """Gateway and service with METRICS_PER_TENANT on vs off, same database and Redis."""
    if stack.plain_gateway_url is None:
        return "SKIPPED metrics on vs off: an attached stack has no second gateway"
    factory = via_gateway(tenant.api_key, tenant.user_ids)

    def target(url: str) -> Callable[[], Sample]:
        return lambda: run_requests(
            url,
            factory,
            concurrency=scale.http_concurrency,
            seconds=scale.tutorial_seconds,
            requests=scale.http_requests,
        )

    samples = interleaved(
        {"on": target(stack.gateway_url), "off": target(stack.plain_gateway_url)},
        rounds=scale.http_rounds,
    )
    return Comparison(
        "per-tenant metrics + usage on vs off",
        figures("metrics on", samples["on"]),
        figures("metrics off", samples["off"]),
        target=METRICS_TARGET,
    )
