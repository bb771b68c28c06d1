"""The in-process cache level: TTL budget, bounded size, and no stale write-back."""

from __future__ import annotations

import pytest

from gateway.cache import CacheTTLs, LocalCache


@pytest.mark.parametrize("total", [0.5, 1, 10, 30, 3600])
def test_an_entry_can_never_outlive_the_configured_ttl_across_both_levels(total: float) -> None:
    ttls = CacheTTLs.from_total(total)
    assert ttls.local + ttls.redis <= total
    assert ttls.negative_local + ttls.negative_redis <= min(total, 5)
    assert ttls.local > 0 and ttls.redis > 0


def test_lookup_started_before_an_invalidation_does_not_store_its_result() -> None:
    cache = LocalCache()
    generation = cache.generation
    cache.drop(("tenant", "1"))  # the invalidation arrives while the lookup is in flight
    cache.put(("tenant", "1"), {"status": "active"}, ttl=5, generation=generation)
    assert cache.get(("tenant", "1")) == (False, None)


def test_negative_entries_are_cached_and_distinguished_from_misses() -> None:
    cache = LocalCache()
    cache.put(("apikey", "ab"), None, ttl=5, generation=cache.generation)
    assert cache.get(("apikey", "ab")) == (True, None)
    assert cache.get(("apikey", "cd")) == (False, None)


def test_cache_is_bounded() -> None:
    cache = LocalCache(max_entries=10)
    for i in range(100):
        cache.put(("tenant", str(i)), i, ttl=60, generation=cache.generation)
    assert sum(cache.get(("tenant", str(i)))[0] for i in range(100)) == 10


def test_tenant_invalidation_drops_its_slug_entries_and_negative_slugs() -> None:
    cache = LocalCache()
    for key, value in [(("slug", "acme"), 1), (("slug", "beta"), 2), (("slug", "new"), None)]:
        cache.put(key, value, ttl=60, generation=cache.generation)
    cache.drop_where("slug", lambda v: v is None or v == 1)
    assert cache.get(("slug", "acme"))[0] is False
    assert cache.get(("slug", "new"))[0] is False
    assert cache.get(("slug", "beta")) == (True, 2)
