"""Tenant JWTs: only HS256 with the gateway's secret, tenant_id and exp required."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

import jwt
import pytest

from gateway.jwt_auth import InvalidToken, tenant_from_jwt

SECRET = "j" * 40


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forge(
    header: dict[str, object], claims: dict[str, object], *, key: bytes, digest=hashlib.sha256
) -> str:  # type: ignore[no-untyped-def]
    """A token signed by hand, so that any header can be claimed."""
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
    signature = hmac.new(key, signing_input.encode(), digest).digest()
    return f"{signing_input}.{b64(signature)}"


def claims(**overrides: object) -> dict[str, object]:
    return {"tenant_id": 7, "exp": int(time.time()) + 60, **overrides}


def test_valid_hs256_token_names_its_tenant() -> None:
    assert tenant_from_jwt(jwt.encode(claims(), SECRET, algorithm="HS256"), secret=SECRET) == 7


def test_small_clock_skew_is_tolerated() -> None:
    token = jwt.encode(claims(exp=int(time.time()) - 2), SECRET, algorithm="HS256")
    assert tenant_from_jwt(token, secret=SECRET) == 7


@pytest.mark.parametrize(
    ("label", "token"),
    [
        pytest.param(label, token, id=label)  # tokens hold the time: ids must not
        for label, token in [
            ("alg none", jwt.encode(claims(), None, algorithm="none")),
            (
                "HS512",
                forge(
                    {"alg": "HS512", "typ": "JWT"},
                    claims(),
                    key=SECRET.encode(),
                    digest=hashlib.sha512,
                ),
            ),
            # A verifier that let the header pick the algorithm would check this RS256 token
            # with the shared secret as the "public key": it must be refused outright.
            (
                "RS256 confusion",
                forge({"alg": "RS256", "typ": "JWT"}, claims(), key=SECRET.encode()),
            ),
            ("expired", jwt.encode(claims(exp=int(time.time()) - 60), SECRET, algorithm="HS256")),
            ("no exp", jwt.encode({"tenant_id": 7}, SECRET, algorithm="HS256")),
            ("no tenant_id", jwt.encode({"exp": int(time.time()) + 60}, SECRET, algorithm="HS256")),
            ("tenant_id string", jwt.encode(claims(tenant_id="7"), SECRET, algorithm="HS256")),
            ("tenant_id bool", jwt.encode(claims(tenant_id=True), SECRET, algorithm="HS256")),
            ("tenant_id zero", jwt.encode(claims(tenant_id=0), SECRET, algorithm="HS256")),
            ("tenant_id negative", jwt.encode(claims(tenant_id=-7), SECRET, algorithm="HS256")),
            ("tenant_id float", jwt.encode(claims(tenant_id=7.0), SECRET, algorithm="HS256")),
            ("other secret", jwt.encode(claims(), "x" * 40, algorithm="HS256")),
            ("garbage", "not.a.jwt"),
        ]
    ],
)
def test_bad_tokens_are_refused(label: str, token: str) -> None:
    with pytest.raises(InvalidToken):
        tenant_from_jwt(token, secret=SECRET)
