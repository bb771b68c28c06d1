"""Tenant JWTs: HS256 with JWT_SECRET, `tenant_id` and `exp` required; `aud`/`iss` when set."""

from __future__ import annotations

import jwt

# Clocks of the token issuer and the gateway may drift a little; more would extend tokens.
LEEWAY_SECONDS = 5


class InvalidToken(Exception):
    """The JWT is malformed, unsigned, expired, or lacks a valid tenant_id."""


def tenant_from_jwt(
    token: str, *, secret: str, audience: str | None = None, issuer: str | None = None
) -> int:
    """Verify a tenant JWT (and its `aud`/`iss` when configured); the tenant id it carries."""
    required = ["exp", "tenant_id"]
    # A token minted for another product sharing the key must not open this one.
    required += ["aud"] if audience else []
    required += ["iss"] if issuer else []
    try:
        # algorithms is a fixed list: the token's own "alg" header never chooses the check,
        # which rules out "none" and the RS256-public-key-as-HMAC-secret confusion.
        claims = jwt.decode(
            token,
            secret,
            algorithms=["HS256"],
            audience=audience,
            issuer=issuer,
            # Without a configured audience, a token's aud is not checked (PyJWT would refuse
            # every token that has one).
            options={"require": required, "verify_aud": audience is not None},
            leeway=LEEWAY_SECONDS,
        )
    except jwt.PyJWTError as exc:
        raise InvalidToken(str(exc)) from exc
    tenant_id = claims["tenant_id"]
    # bool is an int subclass in Python: {"tenant_id": true} must not mean tenant 1.
    if type(tenant_id) is not int or tenant_id <= 0:
        raise InvalidToken("tenant_id must be a positive integer")
    return tenant_id
