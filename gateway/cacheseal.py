"""Cached authorisation the gateway can verify: each Redis value carries an expiry and an HMAC.

Redis is reachable by more than the gateway, so what it returns is only a hint: a value
whose MAC (over the key name, the expiry and the JSON) does not verify under the gateway's
own key, or whose expiry has passed, is treated as a miss and read again from PostgreSQL.
Binding the key name stops a valid entry being copied to another key; the expiry inside the
value stops an entry being made permanent by re-writing it without a TTL.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any

# The derived key's label: a key made for this purpose is never a key made for another.
_LABEL = b"tenantkit gateway redis cache v1"
_VERSION = "v1"


class Unverified(Exception):
    """A cached value the gateway does not trust; `reason` is the metrics label."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def derive_cache_key(secret: str) -> bytes:
    """The MAC key: HMAC-SHA256(secret, label), from GATEWAY_CACHE_SECRET or ADMIN_TOKEN.

    Not INTERNAL_SIGNING_SECRET: every service knows that one, and a service must not be
    able to mint the gateway's cached authorisation.
    """
    return hmac.new(secret.encode(), _LABEL, hashlib.sha256).digest()


class Sealer:
    """Seals values for Redis and opens them again, refusing anything it did not seal."""

    def __init__(self, key: bytes) -> None:
        self._key = key

    def _mac(self, redis_key: str, expires_ms: str, body: str) -> str:
        message = f"{_VERSION}\n{redis_key}\n{expires_ms}\n{body}".encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()

    def seal(self, redis_key: str, value: Any, *, ttl_seconds: float) -> str:
        """`v1.<expiry ms>.<mac>.<json>` for `value` stored under `redis_key`."""
        expires_ms = str(int((time.time() + ttl_seconds) * 1000))
        body = json.dumps(value, separators=(",", ":"))
        return f"{_VERSION}.{expires_ms}.{self._mac(redis_key, expires_ms, body)}.{body}"

    def open(self, redis_key: str, raw: str) -> Any:
        """The value sealed under `redis_key`; Unverified when forged, moved or expired."""
        version, expires_ms, mac, body = (raw.split(".", 3) + ["", "", "", ""])[:4]
        if version != _VERSION or not expires_ms.isdigit() or not body:
            raise Unverified("malformed")
        if not hmac.compare_digest(mac.encode(), self._mac(redis_key, expires_ms, body).encode()):
            raise Unverified("bad_mac")
        if int(expires_ms) <= time.time() * 1000:
            raise Unverified("expired")
        return json.loads(body)
