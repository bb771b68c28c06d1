"""The signed tenant context: the gateway signs it, every service verifies it.

Both sides import this one module so that the message format cannot drift apart. The MAC
covers the tenant, request id, method, target, timestamp, a gateway-made nonce, the SHA-256
of the body, the destination (the route prefix the gateway forwards to) and any extra
fields, under a key derived for that destination.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

TENANT_HEADER = "x-tenant-id"
REQUEST_ID_HEADER = "x-request-id"
TIMESTAMP_HEADER = "x-tenant-timestamp"
NONCE_HEADER = "x-tenant-nonce"
EXTRA_HEADER = "x-tenant-extra"
SIGNATURE_HEADER = "x-tenant-signature"
# Headers only the gateway may set: it drops whatever a client sent under these names (and
# under any name that normalises to one of them, `X_Tenant_ID` included).
CONTEXT_HEADERS = (TENANT_HEADER, TIMESTAMP_HEADER, NONCE_HEADER, EXTRA_HEADER, SIGNATURE_HEADER)

MAX_AGE_SECONDS = 60
# A nonce must be remembered while its timestamp is still accepted: up to 60 s in the
# future plus 60 s in the past.
NONCE_TTL_SECONDS = 2 * MAX_AGE_SECONDS + 1
_VERSION = "tk2"
_NONCE = re.compile(r"^[0-9a-f]{32}$")
_EXTRA_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_EXTRA_VALUE = re.compile(r"^[A-Za-z0-9._:/+-]{0,256}$")
_REQUEST_ID = re.compile(r"^[\x21-\x7e]{1,128}$")


class SignatureError(Exception):
    """The tenant context is missing, malformed, stale or not signed by the gateway."""


@dataclass(frozen=True, slots=True)
class TenantContext:
    """What the gateway vouches for: the tenant, the request id, the nonce, extra fields."""

    tenant_id: int
    request_id: str
    nonce: str = ""
    # Optional signed fields (e.g. statement_timeout_ms, placement): already verified.
    extra: Mapping[str, str] = field(default_factory=dict)


def request_target(raw_path: bytes | str, query_string: bytes | str = b"") -> str:
    """The exact request target that is signed: raw (still percent-encoded) path plus query."""
    path = raw_path.decode("latin-1") if isinstance(raw_path, bytes) else raw_path
    query = query_string.decode("latin-1") if isinstance(query_string, bytes) else query_string
    return f"{path}?{query}" if query else path


def body_digest(body: bytes) -> str:
    """The SHA-256 of the exact body bytes, hex."""
    return hashlib.sha256(body).hexdigest()


def destination_key(secret: str, destination: str) -> bytes:
    """The key for one destination, derived from the shared secret (HMAC as a KDF).

    A service that is given only its derived key cannot sign for another destination.
    """
    return hmac.new(
        secret.encode(), f"tenantkit destination key\n{destination}".encode(), hashlib.sha256
    ).digest()


def encode_extra(extra: Mapping[str, str | int]) -> str:
    """`a=1;b=x`, sorted by name: the canonical form that is carried and signed."""
    parts = []
    for name in sorted(extra):
        value = str(extra[name])
        if not _EXTRA_NAME.match(name) or not _EXTRA_VALUE.match(value):
            raise ValueError(f"extra signed field {name!r}={value!r} is not of the safe form")
        parts.append(f"{name}={value}")
    return ";".join(parts)


def _decode_extra(raw: str) -> dict[str, str]:
    if raw == "":
        return {}
    extra: dict[str, str] = {}
    for part in raw.split(";"):
        name, sep, value = part.partition("=")
        if not sep or name in extra:
            raise SignatureError("malformed extra fields")
        extra[name] = value
    if encode_extra(extra) != raw:  # also checks the order and the character sets
        raise SignatureError("extra fields are not canonical")
    return extra


def compute_signature(
    key: bytes,
    *,
    tenant_id: int,
    request_id: str,
    method: str,
    target: str,
    timestamp: int,
    nonce: str,
    destination: str,
    body_sha256: str,
    extra: str = "",
) -> str:
    """HMAC-SHA256 over every field that a replay to another tenant, route or body would change."""
    fields = (
        _VERSION,
        str(tenant_id),
        request_id,
        method.upper(),
        target,
        str(timestamp),
        nonce,
        destination,
        body_sha256,
        extra,
    )
    # HTTP header values and targets cannot hold a newline, so joining by one is unambiguous;
    # refusing one here keeps it so for any future caller.
    if any("\n" in f for f in fields):
        raise SignatureError("a signed field contains a newline")
    message = "\n".join(fields).encode("latin-1")
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def new_nonce() -> str:
    """128 random bits, hex: made only by the gateway, remembered by the services."""
    return secrets.token_hex(16)


@dataclass(slots=True)
class Signer:
    """The gateway's side: one master secret, one derived key per destination (cached)."""

    secret: str
    _keys: dict[str, bytes] = field(default_factory=dict)

    def key(self, destination: str) -> bytes:
        """The derived key for `destination`."""
        key = self._keys.get(destination)
        if key is None:
            key = self._keys[destination] = destination_key(self.secret, destination)
        return key

    def headers(
        self,
        *,
        tenant_id: int,
        request_id: str,
        method: str,
        target: str,
        destination: str,
        body: bytes = b"",
        extra: Mapping[str, str | int] | None = None,
        now: float | None = None,
        nonce: str | None = None,
    ) -> dict[str, str]:
        """The headers the gateway adds to a request it forwards to `destination`."""
        timestamp = int(time.time() if now is None else now)
        nonce = nonce or new_nonce()
        extra_raw = encode_extra(extra or {})
        signature = compute_signature(
            self.key(destination),
            tenant_id=tenant_id,
            request_id=request_id,
            method=method,
            target=target,
            timestamp=timestamp,
            nonce=nonce,
            destination=destination,
            body_sha256=body_digest(body),
            extra=extra_raw,
        )
        headers = {
            TENANT_HEADER: str(tenant_id),
            REQUEST_ID_HEADER: request_id,
            TIMESTAMP_HEADER: str(timestamp),
            NONCE_HEADER: nonce,
            SIGNATURE_HEADER: signature,
        }
        if extra_raw:
            headers[EXTRA_HEADER] = extra_raw
        return headers


def sign_headers(secret: str, *, destination: str, **kwargs: object) -> dict[str, str]:
    """One-off signing (tests, tools): `Signer(secret).headers(...)`."""
    return Signer(secret).headers(destination=destination, **kwargs)  # type: ignore[arg-type]


def _single(getlist: Callable[[str], list[str]], name: str, *, optional: bool = False) -> str:
    values = getlist(name)
    if optional and not values:
        return ""
    if len(values) != 1:
        raise SignatureError(f"expected exactly one {name} header")
    return values[0]


@dataclass(frozen=True, slots=True)
class SignedHeaders:
    """The context headers of a request, parsed and checked for form and age (not yet MAC)."""

    tenant_id: int
    request_id: str
    timestamp: int
    nonce: str
    extra_raw: str
    signature: str


def parse_headers(
    getlist: Callable[[str], list[str]], *, now: float | None = None
) -> SignedHeaders:
    """The cheap checks, done before the body is read: form, one of each, freshness."""
    tenant_raw = _single(getlist, TENANT_HEADER)
    request_id = _single(getlist, REQUEST_ID_HEADER)
    timestamp_raw = _single(getlist, TIMESTAMP_HEADER)
    nonce = _single(getlist, NONCE_HEADER)
    extra_raw = _single(getlist, EXTRA_HEADER, optional=True)
    signature = _single(getlist, SIGNATURE_HEADER)
    if not (tenant_raw.isascii() and tenant_raw.isdigit()) or int(tenant_raw) <= 0:
        raise SignatureError("tenant id is not a positive integer")
    if not (timestamp_raw.isascii() and timestamp_raw.isdigit()):
        raise SignatureError("timestamp is not an integer")
    if not _NONCE.match(nonce):
        raise SignatureError("nonce is not 128 bits of hex")
    if not _REQUEST_ID.match(request_id):
        raise SignatureError("request id is malformed")
    timestamp = int(timestamp_raw)
    current = time.time() if now is None else now
    if abs(current - timestamp) > MAX_AGE_SECONDS:
        raise SignatureError("tenant context is stale")
    return SignedHeaders(
        tenant_id=int(tenant_raw),
        request_id=request_id,
        timestamp=timestamp,
        nonce=nonce,
        extra_raw=extra_raw,
        signature=signature,
    )


def verify_mac(
    key: bytes,
    parsed: SignedHeaders,
    *,
    method: str,
    target: str,
    destination: str,
    body: bytes,
) -> TenantContext:
    """Check the MAC over this exact request as it reached `destination`; the context."""
    expected = compute_signature(
        key,
        tenant_id=parsed.tenant_id,
        request_id=parsed.request_id,
        method=method,
        target=target,
        timestamp=parsed.timestamp,
        nonce=parsed.nonce,
        destination=destination,
        body_sha256=body_digest(body),
        extra=parsed.extra_raw,
    )
    # compare_digest: the time taken must not tell an attacker how many characters matched.
    if not hmac.compare_digest(expected, parsed.signature):
        raise SignatureError("bad signature")
    return TenantContext(
        tenant_id=parsed.tenant_id,
        request_id=parsed.request_id,
        nonce=parsed.nonce,
        extra=_decode_extra(parsed.extra_raw),
    )


def verify_headers(
    key: bytes,
    *,
    getlist: Callable[[str], list[str]],
    method: str,
    target: str,
    destination: str,
    body: bytes = b"",
    now: float | None = None,
) -> TenantContext:
    """Parse and check the MAC in one call (no replay check: that needs the nonce store)."""
    parsed = parse_headers(getlist, now=now)
    return verify_mac(key, parsed, method=method, target=target, destination=destination, body=body)
