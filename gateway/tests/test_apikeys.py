"""API keys: their format, and that only a SHA-256 digest of them is ever stored."""

from __future__ import annotations

import hashlib

from gateway.apikeys import display_prefix, generate_key, key_digest, looks_like_key


def test_keys_are_tk_plus_at_least_43_url_safe_characters_and_unique() -> None:
    keys = {generate_key() for _ in range(200)}
    assert len(keys) == 200
    for key in keys:
        assert key.startswith("tk_")
        assert len(key) - 3 >= 43
        assert looks_like_key(key)


def test_digest_is_sha256_of_the_whole_key() -> None:
    key = generate_key()
    assert key_digest(key) == hashlib.sha256(key.encode()).digest()


def test_display_prefix_reveals_too_little_to_use() -> None:
    key = generate_key()
    assert key.startswith(display_prefix(key))
    assert len(display_prefix(key)) <= 10


def test_malformed_keys_are_recognised_before_any_lookup() -> None:
    for bad in ["", "tk_", "tk_short", "xx_" + "a" * 43, "tk_" + "a" * 40 + "!", "tk_" + "a" * 500]:
        assert not looks_like_key(bad)
