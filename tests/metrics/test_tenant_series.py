"""Per-tenant series stay bounded and keep the heaviest tenants, however many tenants exist."""

from __future__ import annotations

import random

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from gateway.config import Settings
from gateway.usage import p95_ms
from services.tenancy.settings import TenantServiceSettings
from services.tenancy.tenantmetrics import OTHER, RequestStats
from services.tenancy.topk import TopTenants


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _label_sets(stats: RequestStats) -> set[tuple[str, str, str]]:
    registry = CollectorRegistry()
    registry.register(stats)
    text = generate_latest(registry).decode()
    return {
        (s.labels["route"], s.labels["status_class"], s.labels["tenant"])
        for family in text_string_to_metric_families(text)
        if family.name == "gateway_http_requests"
        for s in family.samples
    }


def test_series_stay_bounded_at_10000_tenants_and_keep_the_heaviest() -> None:
    k, tenants, routes = 50, 10_000, ("/users", "/orders", "/billing")
    clock = FakeClock()
    stats = RequestStats("gateway", TopTenants(k, clock=clock))
    rng = random.Random(12)
    # Zipf(1.1): tenant i sends in proportion to 1 / i^1.1; shuffled ids, so order hides nothing.
    ids = [str(n) for n in rng.sample(range(1, 10 * tenants), tenants)]
    weights = [1 / (i + 1) ** 1.1 for i in range(tenants)]
    for step, tenant in enumerate(rng.choices(ids, weights=weights, k=120_000)):
        clock.now += 0.0005  # 60 s of traffic at 2,000 requests a second
        stats.observe(
            route=routes[step % 3],
            status=200 if step % 7 else 503,
            tenant=tenant,
            seconds=0.01,
        )
    series = _label_sets(stats)
    assert len(series) <= k * len(routes) * 2 + len(routes) * 2
    labelled = {tenant for _, _, tenant in series} - {OTHER}
    assert len(labelled) <= k
    # Issue 12's target is 95 % of the 10 heaviest; with 10 that means all of them.
    assert set(ids[:10]) <= labelled


def test_a_tenant_that_leaves_the_top_k_is_folded_into_other_without_losing_counts() -> None:
    clock = FakeClock()
    top = TopTenants(1, half_life_seconds=10, refresh_seconds=0, clock=clock)
    stats = RequestStats("gateway", top)
    for _ in range(30):
        stats.observe(route="/users", status=200, tenant="7", seconds=0.01)
    assert ("/users", "2xx", "7") in _label_sets(stats)
    clock.now += 120  # twelve half-lives: tenant 7's score is nearly gone
    for _ in range(5):
        stats.observe(route="/users", status=200, tenant="8", seconds=0.01)
    series = _label_sets(stats)
    assert ("/users", "2xx", "7") not in series
    assert ("/users", "2xx", "8") in series
    total = sum(row[0] for _, row in stats.series.snapshot())
    assert total == 35  # tenant 7's 30 requests live on in "other"


def test_without_per_tenant_metrics_every_request_is_other() -> None:
    stats = RequestStats("gateway", None)
    stats.observe(route="/users", status=200, tenant="7", seconds=0.01)
    assert _label_sets(stats) == {("/users", "2xx", OTHER)}


def test_p95_is_interpolated_inside_its_bucket() -> None:
    # 100 requests: 90 under 5 ms, 10 between 50 and 100 ms; the 95th is half-way into that.
    counts = [90, 0, 0, 0, 10] + [0] * 7
    assert p95_ms(counts) == 75.0
    assert p95_ms([0] * 12) is None


@pytest.mark.parametrize("value", ["0", "1001", "many"])
def test_a_bad_top_k_stops_gateway_and_service_naming_the_variable(
    value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    base = {
        "ADMIN_TOKEN": "a" * 32,
        "INTERNAL_SIGNING_SECRET": "s" * 32,
        "DATABASE_URL": "postgresql://u:p@127.0.0.1:5432/d",
    }
    with pytest.raises(SystemExit):
        Settings.load(**base, METRICS_TENANT_TOP_K=value)
    assert "invalid setting METRICS_TENANT_TOP_K" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        TenantServiceSettings.load({**base, "METRICS_TENANT_TOP_K": value})
    assert "invalid setting METRICS_TENANT_TOP_K" in capsys.readouterr().err
