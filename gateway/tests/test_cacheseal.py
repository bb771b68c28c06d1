"""Sealed cache values: only what this gateway sealed, under that key name, until it expires."""

from __future__ import annotations

import json

import pytest

from gateway.cacheseal import Sealer, Unverified, derive_cache_key

KEY = "tk:tenant:id:7"


def sealer(secret: str = "gateway-only-secret-0123456789") -> Sealer:
    return Sealer(derive_cache_key(secret))


def test_a_sealed_value_opens_under_its_own_key() -> None:
    value = {"id": 7, "status": "active"}
    assert sealer().open(KEY, sealer().seal(KEY, value, ttl_seconds=5)) == value
    assert sealer().open(KEY, sealer().seal(KEY, None, ttl_seconds=5)) is None


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (json.dumps({"id": 7, "status": "active"}), "malformed"),
        ("v1.99999999999999.00.{}", "bad_mac"),
        ("", "malformed"),
        ("v1.abc.def.{}", "malformed"),
    ],
)
def test_unsealed_or_garbled_values_are_refused(raw: str, reason: str) -> None:
    with pytest.raises(Unverified) as refused:
        sealer().open(KEY, raw)
    assert refused.value.reason == reason


def test_a_value_moved_to_another_key_or_edited_is_refused() -> None:
    sealed = sealer().seal(KEY, {"id": 7, "status": "suspended"}, ttl_seconds=5)
    with pytest.raises(Unverified, match="bad_mac"):
        sealer().open("tk:tenant:id:8", sealed)
    with pytest.raises(Unverified, match="bad_mac"):
        sealer().open(KEY, sealed.replace("suspended", "active"))
    with pytest.raises(Unverified, match="bad_mac"):
        sealer("someone-else-secret-0123456789").open(KEY, sealed)


def test_an_expired_value_is_refused_even_when_redis_kept_it() -> None:
    sealed = sealer().seal(KEY, {"id": 7}, ttl_seconds=-1)
    with pytest.raises(Unverified, match="expired"):
        sealer().open(KEY, sealed)


def test_the_key_is_not_the_services_signing_secret() -> None:
    # Derived with a label: even the same secret string gives a key of its own.
    assert derive_cache_key("x" * 32) != b"x" * 32
