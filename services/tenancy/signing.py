"""The signed tenant context: the gateway signs it, every service verifies it.

Both sides import this one module so that the message format cannot drift apart.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

TENANT_HEADER = "x-tenant-id"
REQUEST_ID_HEADER = "x-request-id"
TIMESTAMP_HEADER = "x-tenant-timestamp"
SIGNATURE_HEADER = "x-tenant-signature"
# Headers only the gateway may set: it drops whatever a client sent under these names.
CONTEXT_HEADERS = (TENANT_HEADER, TIMESTAMP_HEADER, SIGNATURE_HEADER)

MAX_AGE_SECONDS = 60
_VERSION = "tk1"


class SignatureError(Exception):
    """The tenant context is missing, malformed, stale or not signed by the gateway."""


@dataclass(frozen=True, slots=True)
class TenantContext:
    tenant_id: int
    request_id: str
    # Optional signed fields (e.g. statement_timeout_ms, placement): already verified.
    extra: Mapping[str, str] = field(default_factory=dict)


def request_target(raw_path: bytes | str, query_string: bytes | str = b"") -> str:
    """The exact request target that is signed: raw (still percent-encoded) path plus query."""
    path = raw_path.decode("latin-1") if isinstance(raw_path, bytes) else raw_path
    query = query_string.decode("latin-1") if isinstance(query_string, bytes) else query_string
    return f"{path}?{query}" if query else path


def compute_signature(
    secret: str, *, tenant_id: int, request_id: str, method: str, target: str, timestamp: int
) -> str:
    """HMAC-SHA256 over every field that a replay to another tenant or route would change."""
    message = "\n".join(
        (_VERSION, str(tenant_id), request_id, method.upper(), target, str(timestamp))
    )
    return hmac.new(secret.encode(), message.encode("latin-1"), hashlib.sha256).hexdigest()


def sign_headers(
    secret: str,
    *,
    tenant_id: int,
    request_id: str,
    method: str,
    target: str,
    now: float | None = None,
) -> dict[str, str]:
    """The headers the gateway adds to a forwarded request."""
    timestamp = int(time.time() if now is None else now)
    signature = compute_signature(
        secret,
        tenant_id=tenant_id,
        request_id=request_id,
        method=method,
        target=target,
        timestamp=timestamp,
    )
    return {
        TENANT_HEADER: str(tenant_id),
        REQUEST_ID_HEADER: request_id,
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: signature,
    }


def _single(getlist: Callable[[str], list[str]], name: str) -> str:
    values = getlist(name)
    if len(values) != 1:
        raise SignatureError(f"expected exactly one {name} header")
    return values[0]


def verify_headers(
    secret: str,
    *,
    getlist: Callable[[str], list[str]],
    method: str,
    target: str,
    now: float | None = None,
) -> TenantContext:
    """Check the gateway's signature; return the tenant context it vouches for."""
    tenant_raw = _single(getlist, TENANT_HEADER)
    request_id = _single(getlist, REQUEST_ID_HEADER)
    timestamp_raw = _single(getlist, TIMESTAMP_HEADER)
    signature = _single(getlist, SIGNATURE_HEADER)
    if not (tenant_raw.isascii() and tenant_raw.isdigit()) or int(tenant_raw) <= 0:
        raise SignatureError("tenant id is not a positive integer")
    if not (timestamp_raw.isascii() and timestamp_raw.isdigit()):
        raise SignatureError("timestamp is not an integer")
    tenant_id, timestamp = int(tenant_raw), int(timestamp_raw)
    current = time.time() if now is None else now
    if abs(current - timestamp) > MAX_AGE_SECONDS:
        raise SignatureError("tenant context is stale")
    expected = compute_signature(
        secret,
        tenant_id=tenant_id,
        request_id=request_id,
        method=method,
        target=target,
        timestamp=timestamp,
    )
    # compare_digest: the time taken must not tell an attacker how many characters matched.
    if not hmac.compare_digest(expected, signature):
        raise SignatureError("bad signature")
    return TenantContext(tenant_id=tenant_id, request_id=request_id)
