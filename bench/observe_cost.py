"""What per-tenant metrics and usage accounting cost: the gateway with them on against off."""

from __future__ import annotations

from bench.generator import http_round
from bench.measure import Comparison, Target, figures, interleaved
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

    samples = interleaved(
        {
            "on": http_round(stack.gateway_url, factory, scale),
            "off": http_round(stack.plain_gateway_url, factory, scale),
        },
        rounds=scale.http_rounds,
    )
    return Comparison(
        "per-tenant metrics + usage on vs off",
        figures("metrics on", samples["on"]),
        figures("metrics off", samples["off"]),
        target=METRICS_TARGET,
    )
