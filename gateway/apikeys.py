"""API keys: `tk_` + 43 URL-safe characters (256 random bits), stored only as a SHA-256 digest."""

from __future__ import annotations

import hashlib
import re
import secrets

KEY_PREFIX = "tk_"
# What a key may look like; anything else is refused before a cache or database lookup.
_KEY_FORMAT = re.compile(r"^tk_[A-Za-z0-9_-]{32,128}$")
DISPLAY_PREFIX_LENGTH = 10


def generate_key() -> str:
    """A new key: 32 random bytes, URL-safe base64 (43 characters) after `tk_`."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def looks_like_key(value: str) -> bool:
    """Whether a credential has the shape of a tenantkit API key."""
    return _KEY_FORMAT.match(value) is not None


def key_digest(key: str) -> bytes:
    """The stored form of a key.

    SHA-256, not a password KDF: keys carry 256 random bits, so nobody can brute-force a
    preimage whatever the hash speed, and a slow hash would only cost every request. The
    lookup is by this digest through a unique index, so no secret is ever compared
    character by character: the time a lookup takes says nothing about how close a guess was.
    """
    return hashlib.sha256(key.encode()).digest()


def display_prefix(key: str) -> str:
    """The part of a key that is safe to show in listings (`tk_AbCdEf1`)."""
    return key[:DISPLAY_PREFIX_LENGTH]
