"""The signed context's format: every field is covered, extras are canonical, nonces unique."""

from __future__ import annotations

import time
from typing import Any

import pytest

from services.tenancy.replay import LocalNonces
from services.tenancy.signing import (
    EXTRA_HEADER,
    NONCE_HEADER,
    NONCE_TTL_SECONDS,
    SignatureError,
    Signer,
    destination_key,
    verify_headers,
)

SECRET = "s" * 32
REQUEST = {
    "tenant_id": 7,
    "request_id": "req-1",
    "method": "POST",
    "target": "/users?x=1",
    "destination": "/users",
    "body": b'{"name": "A"}',
}


def _verify(headers: dict[str, str], **changes: Any) -> Any:
    request = {**REQUEST, **changes}
    return verify_headers(
        destination_key(SECRET, request["destination"]),
        getlist=lambda name: [headers[name]] if name in headers else [],
        method=request["method"],
        target=request["target"],
        destination=request["destination"],
        body=request["body"],
    )


def _sign(**extra: Any) -> dict[str, str]:
    return Signer(SECRET).headers(**REQUEST, extra=extra or None)  # type: ignore[arg-type]


def test_genuine_request_verifies_with_its_extra_fields() -> None:
    context = _verify(_sign(statement_timeout_ms=250, placement="eu-1"))
    assert (context.tenant_id, context.request_id) == (7, "req-1")
    assert dict(context.extra) == {"placement": "eu-1", "statement_timeout_ms": "250"}


@pytest.mark.parametrize(
    "change",
    [
        {"method": "PUT"},
        {"target": "/users?x=2"},
        {"destination": "/notes"},
        {"body": b'{"name": "B"}'},
        {"body": b""},
    ],
)
def test_any_change_to_a_signed_part_of_the_request_is_refused(change: dict[str, Any]) -> None:
    with pytest.raises(SignatureError):
        _verify(_sign(), **change)


@pytest.mark.parametrize(
    "header", ["x-tenant-id", "x-request-id", "x-tenant-timestamp", NONCE_HEADER, EXTRA_HEADER]
)
def test_any_change_to_a_signed_header_is_refused(header: str) -> None:
    headers = _sign(placement="eu-1")
    headers[header] = {
        "x-tenant-id": "8",
        "x-request-id": "req-2",
        "x-tenant-timestamp": str(int(headers["x-tenant-timestamp"]) - 1),
        NONCE_HEADER: "0" * 32,
        EXTRA_HEADER: "placement=us-1",
    }[header]
    with pytest.raises(SignatureError):
        _verify(headers)


def test_extra_fields_are_canonical_sorted_and_of_a_safe_form() -> None:
    assert _sign(b="2", a=1)[EXTRA_HEADER] == "a=1;b=2"
    for bad in ({"Bad": "x"}, {"a": "x;b=y"}, {"a": "line\nbreak"}, {"a": "x y"}):
        with pytest.raises(ValueError):
            _sign(**bad)
    # Same fields, another order or spelling: not what was signed, even with a valid MAC.
    headers = _sign(a=1, b=2)
    headers[EXTRA_HEADER] = "b=2;a=1"
    with pytest.raises(SignatureError):
        _verify(headers)


def test_each_signature_carries_a_fresh_128_bit_nonce() -> None:
    nonces = {_sign()[NONCE_HEADER] for _ in range(1000)}
    assert len(nonces) == 1000
    assert all(len(n) == 32 and int(n, 16) >= 0 for n in nonces)


def test_destination_keys_differ_and_do_not_reveal_the_secret() -> None:
    users, notes = destination_key(SECRET, "/users"), destination_key(SECRET, "/notes")
    assert users != notes and SECRET.encode() not in (users, notes) and len(users) == 32


def test_local_nonces_are_refused_once_seen_and_forgotten_after_their_window() -> None:
    store = LocalNonces(max_entries=2)
    now = time.monotonic()
    assert store.first_use("a", now=now) and not store.first_use("a", now=now + 1)
    assert store.first_use("b", now=now + 1)
    assert store.first_use("a", now=now + NONCE_TTL_SECONDS + 0.1)  # "a" expired
