"""The load test's pure logic: tenant weights, the cross-tenant check, the verdicts.

Locust is never imported here: it monkey-patches the whole process with gevent.
"""

from __future__ import annotations

from collections import Counter

from loadtests.isolation import (
    OwnershipRegistry,
    email_marker,
    foreign_rows,
    name_marker,
    next_link,
)
from loadtests.noisy import merge_others, noisy_exit_code, within_bound
from loadtests.tenants import assignment_order, user_quotas, zipf_weights
from loadtests.verdict import GroupFigures, histogram_percentile, verdict


def test_every_tenant_gets_a_user_and_the_large_ones_get_more() -> None:
    quotas = user_quotas(zipf_weights(10), 25)

    assert sum(quotas) == 25
    assert min(quotas) >= 1
    assert quotas == sorted(quotas, reverse=True)
    assert quotas[0] >= 3 * quotas[-1]


def test_the_first_users_spawned_cover_every_tenant_and_all_follow_the_quotas() -> None:
    quotas = user_quotas(zipf_weights(10), 25)
    order = assignment_order(quotas)

    assert sorted(order[:10]) == list(range(10))
    assert Counter(order) == dict(enumerate(quotas))


def test_a_row_with_another_tenants_id_field_is_foreign() -> None:
    rows = [{"id": 1, "tenant_id": 7}, {"id": 2, "tenant_id": 8}]

    assert foreign_rows(rows, tenant_id=7) == [(2, 8)]


def test_a_row_carrying_another_tenants_marker_is_foreign_even_when_it_claims_to_be_ours() -> None:
    by_name = {"id": 1, "tenant_id": 7, "name": f"Load user x {name_marker(8)}", "email": None}
    by_email = {"id": 2, "tenant_id": 7, "name": "renamed", "email": f"u1{email_marker(9)}x.io"}

    assert foreign_rows(by_name, tenant_id=7) == [(1, 8)]
    assert foreign_rows([by_name, by_email], tenant_id=7) == [(1, 8), (2, 9)]


def test_own_rows_and_bodies_without_rows_pass() -> None:
    own = {
        "id": 1,
        "tenant_id": 7,
        "name": f"Load user x {name_marker(7)}",
        "email": f"u1{email_marker(7)}example.com",
    }
    # Markers are whole: tenant 7's is not mistaken for tenant 70's or 17's.
    other_digits = {**own, "id": 2, "name": f"n {name_marker(70)}", "email": None}

    assert foreign_rows([own], tenant_id=7) == []
    assert foreign_rows([other_digits], tenant_id=7) == [(2, 70)]
    assert foreign_rows({"detail": "Not Found"}, tenant_id=7) == []
    assert foreign_rows(None, tenant_id=7) == []


def test_registry_keys_rows_by_tenant_and_id() -> None:
    registry = OwnershipRegistry()
    registry.record(user_id=1, tenant_id=7)
    registry.record(user_id=1, tenant_id=8)
    registry.record(user_id=2, tenant_id=8)

    # Both tenants hold an id 1: each one's, neither the other's.
    assert registry.created(user_id=1, tenant_id=7) and registry.created(user_id=1, tenant_id=8)
    assert not registry.created(user_id=2, tenant_id=7)
    assert registry.foreign_ids(7) == [1, 2]
    assert registry.foreign_ids(8) == [1]


def test_next_page_link_is_followed_relative_to_the_gateway() -> None:
    assert next_link('</users?limit=10&after=55>; rel="next"') == "/users?limit=10&after=55"
    assert next_link('<http://10.0.0.5:8001/users?after=3>; rel="next"') == "/users?after=3"
    assert next_link(None) is None
    assert next_link('</users?after=3>; rel="prev"') is None


def _figures(*, requests: int = 1000, failures: int = 0, p95_ms: float = 20) -> GroupFigures:
    return GroupFigures(
        requests=requests,
        failures=failures,
        rps=50.0,
        p50_ms=5,
        p95_ms=p95_ms,
        p99_ms=p95_ms * 2,
        cross_tenant=0,
        rate_limited=0,
    )


def test_verdict_fails_on_a_single_cross_tenant_response() -> None:
    assert verdict(_figures(), cross_tenant=0, p95_bound_ms=100).exit_code == 0
    result = verdict(_figures(), cross_tenant=1, p95_bound_ms=100)
    assert result.exit_code == 1
    assert "cross-tenant" in result.reasons[0]


def test_verdict_fails_over_one_percent_failures_or_over_the_p95_bound() -> None:
    assert verdict(_figures(failures=10), cross_tenant=0, p95_bound_ms=100).exit_code == 0
    assert verdict(_figures(failures=11), cross_tenant=0, p95_bound_ms=100).exit_code == 1
    assert verdict(_figures(p95_ms=101), cross_tenant=0, p95_bound_ms=100).exit_code == 1
    assert verdict(_figures(requests=0), cross_tenant=0, p95_bound_ms=100).exit_code == 1


def test_percentiles_from_a_histogram_count_as_locust_does() -> None:
    histogram = {5: 90, 50: 9, 900: 1}

    assert histogram_percentile(histogram, 0.50) == 5
    assert histogram_percentile(histogram, 0.95) == 50
    assert histogram_percentile(histogram, 0.999) == 900


def _phase(times: dict[int, int], **counts: int) -> dict:
    others = {"requests": sum(times.values()), "failures": 0, "rate_limited": 0, "cross_tenant": 0}
    return {
        "others": {**others, **counts},
        "others_response_times": {str(k): v for k, v in times.items()},
    }


def test_quiet_phases_are_merged_from_their_histograms_not_averaged() -> None:
    merged = merge_others([_phase({10: 90, 100: 10}), _phase({10: 10, 100: 90})])

    assert merged["requests"] == 200
    assert merged["p50_ms"] in (10, 100)
    assert merged["p95_ms"] == 100


def test_others_slowed_more_than_twofold_by_the_flood_fail_the_noisy_run() -> None:
    quiet = merge_others([_phase({10: 95, 40: 5})])
    held = merge_others([_phase({15: 95, 60: 5})])
    slowed = merge_others([_phase({30: 95, 90: 5})])

    assert within_bound(quiet=quiet, flood=held)
    assert noisy_exit_code(quiet=quiet, flood=held, flooder={}) == 0
    assert not within_bound(quiet=quiet, flood=slowed)
    assert noisy_exit_code(quiet=quiet, flood=slowed, flooder={}) == 1
    assert noisy_exit_code(quiet=quiet, flood=held, flooder={"cross_tenant": 1}) == 1


def test_admin_api_is_reached_on_its_own_listener_when_one_is_given() -> None:
    from loadtests.settings import LoadSettings

    same = LoadSettings.model_validate({"LOCUST_HOST": "http://gw:8000"})
    assert same.admin_url() == "http://gw:8000"
    assert same.admin_url("http://other:8000/") == "http://other:8000"
    internal = LoadSettings.model_validate(
        {"LOCUST_HOST": "http://gw:8000", "LOAD_ADMIN_URL": "http://gw:9000/"}
    )
    assert internal.admin_url("http://other:8000") == "http://gw:9000"
