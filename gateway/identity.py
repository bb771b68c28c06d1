"""Who is calling (SPEC §5): identify, authenticate, and decide the tenant.

Credential modes (api_key, jwt) authenticate; identification modes (subdomain, header)
only name a tenant. When a credential mode is on, the credential decides and any name the
client adds must agree with it.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from starlette.datastructures import Headers

from gateway.apikeys import KEY_PREFIX, key_digest, looks_like_key
from gateway.errors import GatewayError
from gateway.jwt_auth import InvalidToken, tenant_from_jwt

# A positive integer as people write it: no sign, no leading zero, no spaces, fits bigint.
_TENANT_ID = re.compile(r"^[1-9][0-9]{0,17}$")
_SLUG = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="tenantkit"'}
_INVALID = {"WWW-Authenticate": 'Bearer realm="tenantkit", error="invalid_token"'}


@dataclass(frozen=True, slots=True)
class Claims:
    """What the request names, before anything is believed."""

    header_tenant_id: int | None  # X-Tenant-ID, whatever the mode: it must agree if present
    slug: str | None  # the subdomain's label, in subdomain mode


def identify(headers: Headers, *, modes: frozenset[str], base_domain: str | None) -> Claims:
    """Parse X-Tenant-ID and the subdomain; 400 when X-Tenant-ID is repeated or malformed."""
    values = headers.getlist("x-tenant-id")
    header_tenant_id = None
    if len(values) > 1:
        raise GatewayError(400, "X-Tenant-ID must be sent once")
    if values:
        if not _TENANT_ID.match(values[0]):
            raise GatewayError(400, "X-Tenant-ID must be a positive integer")
        header_tenant_id = int(values[0])
    slug = None
    if "subdomain" in modes and base_domain:
        slug = _subdomain(headers.get("host", ""), base_domain)
    return Claims(header_tenant_id=header_tenant_id, slug=slug)


def _subdomain(host: str, base_domain: str) -> str | None:
    """The label before the base domain; None when the Host is not under it."""
    hostname = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    hostname = hostname.lower().rstrip(".")
    suffix = "." + base_domain
    if not hostname.endswith(suffix):
        return None
    label = hostname[: -len(suffix)]
    # "a.b.example.com", or a label no slug can be, names no tenant: keep it (marked) so
    # that the request is refused rather than treated as naming nothing.
    return label if _SLUG.match(label) else "!" + label[:64]


async def authenticate(
    headers: Headers,
    *,
    modes: frozenset[str],
    jwt_secret: str | None,
    key_owner: Callable[[bytes], Awaitable[int | None]],
    jwt_audience: str | None = None,
    jwt_issuer: str | None = None,
) -> int | None:
    """The tenant id the credential proves; None when no credential mode is enabled."""
    if not modes & {"api_key", "jwt"}:
        return None
    authorization = headers.getlist("authorization")
    api_key_headers = headers.getlist("x-api-key")
    if not authorization and not api_key_headers:
        raise GatewayError(401, "credentials required", _CHALLENGE)
    if len(authorization) + len(api_key_headers) > 1:
        raise GatewayError(401, "send exactly one credential", _INVALID)
    if api_key_headers:
        if "api_key" not in modes:
            raise GatewayError(401, "API keys are not accepted here", _INVALID)
        return await _key_tenant(api_key_headers[0].strip(), key_owner)
    scheme, _, token = authorization[0].strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise GatewayError(401, "use Authorization: Bearer <token>", _INVALID)
    if "api_key" in modes and token.startswith(KEY_PREFIX):
        return await _key_tenant(token, key_owner)
    if "jwt" in modes and jwt_secret:
        try:
            return tenant_from_jwt(
                token, secret=jwt_secret, audience=jwt_audience, issuer=jwt_issuer
            )
        except InvalidToken as exc:
            raise GatewayError(401, f"invalid token: {exc}", _INVALID) from exc
    raise GatewayError(401, "invalid credentials", _INVALID)


async def _key_tenant(key: str, key_owner: Callable[[bytes], Awaitable[int | None]]) -> int:
    # Malformed keys never reach a cache or the database.
    if not looks_like_key(key):
        raise GatewayError(401, "invalid API key", _INVALID)
    tenant_id = await key_owner(key_digest(key))
    if tenant_id is None:
        raise GatewayError(401, "invalid API key", _INVALID)
    return tenant_id


async def decide_tenant(
    claims: Claims,
    *,
    credential_tenant_id: int | None,
    modes: frozenset[str],
    slug_to_id: Callable[[str], Awaitable[int | None]],
) -> int:
    """The one tenant this request acts for; 403 when two sources disagree."""
    slug_tenant_id = None
    if claims.slug is not None:
        slug_tenant_id = await slug_to_id(claims.slug) if not claims.slug.startswith("!") else None
    if credential_tenant_id is not None:
        if claims.header_tenant_id is not None and claims.header_tenant_id != credential_tenant_id:
            raise GatewayError(403, "X-Tenant-ID does not match the credential")
        if claims.slug is not None and slug_tenant_id != credential_tenant_id:
            raise GatewayError(403, "the subdomain does not match the credential")
        return credential_tenant_id
    # No credential mode: only the identification modes name the tenant (development).
    named = []
    if "header" in modes and claims.header_tenant_id is not None:
        named.append(claims.header_tenant_id)
    if claims.slug is not None:
        if slug_tenant_id is None:
            raise GatewayError(404, "tenant not found")
        named.append(slug_tenant_id)
    if not named:
        if "header" in modes:
            raise GatewayError(400, "X-Tenant-ID header required")
        raise GatewayError(400, "name the tenant with its subdomain")
    if len(set(named)) > 1 or (
        claims.header_tenant_id is not None and claims.header_tenant_id != named[0]
    ):
        raise GatewayError(403, "the subdomain and X-Tenant-ID name different tenants")
    return named[0]
