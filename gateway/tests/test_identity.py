"""SPEC §5's rules, as pure logic: which tenant a request acts for, or why it is refused."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from starlette.datastructures import Headers

from gateway.errors import GatewayError
from gateway.identity import authenticate, decide_tenant, identify

SLUGS = {"acme": 1, "beta": 2}
CREDENTIALS = frozenset({"api_key", "jwt", "subdomain"})


def headers(*pairs: tuple[str, str]) -> Headers:
    return Headers(raw=[(k.lower().encode(), v.encode()) for k, v in pairs])


def run(coro: Any) -> Any:
    return asyncio.run(coro)


async def slug_to_id(slug: str) -> int | None:
    return SLUGS.get(slug)


def decide(h: Headers, *, credential: int | None, modes: frozenset[str]) -> int:
    claims = identify(h, modes=modes, base_domain="example.test")
    return run(
        decide_tenant(claims, credential_tenant_id=credential, modes=modes, slug_to_id=slug_to_id)
    )


def status_of(fn: Any) -> int:
    with pytest.raises(GatewayError) as info:
        fn()
    return info.value.status


@pytest.mark.parametrize(
    "value", ["1, 2", "-1", "01", " 1", "1 ", "0", "1.0", "+1", "abc", "", "9" * 30, "１"]
)
def test_malformed_tenant_header_is_400_whatever_the_mode(value: str) -> None:
    h = Headers(raw=[(b"x-tenant-id", value.encode())])
    for modes in (CREDENTIALS, frozenset({"header"})):
        assert status_of(lambda m=modes: identify(h, modes=m, base_domain=None)) == 400


def test_repeated_tenant_header_is_400() -> None:
    h = headers(("X-Tenant-ID", "1"), ("X-Tenant-ID", "1"))
    assert status_of(lambda: identify(h, modes=frozenset({"header"}), base_domain=None)) == 400


def test_credential_decides_and_an_agreeing_name_is_fine() -> None:
    assert decide(headers(), credential=1, modes=CREDENTIALS) == 1
    assert (
        decide(
            headers(("X-Tenant-ID", "1"), ("Host", "acme.example.test:8000")),
            credential=1,
            modes=CREDENTIALS,
        )
        == 1
    )


def test_tenant_header_naming_another_tenant_than_the_credential_is_403() -> None:
    assert (
        status_of(lambda: decide(headers(("X-Tenant-ID", "2")), credential=1, modes=CREDENTIALS))
        == 403
    )


@pytest.mark.parametrize(
    "host", ["beta.example.test", "nobody.example.test", "a.acme.example.test", "-x-.example.test"]
)
def test_subdomain_disagreeing_with_the_credential_or_naming_no_tenant_is_403(host: str) -> None:
    assert (
        status_of(lambda: decide(headers(("Host", host)), credential=1, modes=CREDENTIALS)) == 403
    )


def test_host_outside_the_base_domain_names_nothing() -> None:
    assert decide(headers(("Host", "127.0.0.1:8000")), credential=2, modes=CREDENTIALS) == 2


def test_header_mode_alone_lets_the_header_decide_and_requires_it() -> None:
    modes = frozenset({"header"})
    assert decide(headers(("X-Tenant-ID", "2")), credential=None, modes=modes) == 2
    assert status_of(lambda: decide(headers(), credential=None, modes=modes)) == 400


def test_subdomain_mode_alone_decides_by_slug() -> None:
    modes = frozenset({"subdomain"})
    assert decide(headers(("Host", "beta.example.test")), credential=None, modes=modes) == 2
    assert (
        status_of(
            lambda: decide(headers(("Host", "nobody.example.test")), credential=None, modes=modes)
        )
        == 404
    )
    assert (
        status_of(lambda: decide(headers(("Host", "localhost")), credential=None, modes=modes))
        == 400
    )


def test_subdomain_and_header_naming_different_tenants_is_403() -> None:
    modes = frozenset({"subdomain", "header"})
    h = headers(("Host", "beta.example.test"), ("X-Tenant-ID", "1"))
    assert status_of(lambda: decide(h, credential=None, modes=modes)) == 403


def test_without_header_mode_a_tenant_header_cannot_name_the_tenant() -> None:
    modes = frozenset({"subdomain"})
    assert (
        status_of(lambda: decide(headers(("X-Tenant-ID", "1")), credential=None, modes=modes))
        == 400
    )
    h = headers(("Host", "beta.example.test"), ("X-Tenant-ID", "1"))
    assert status_of(lambda: decide(h, credential=None, modes=modes)) == 403


async def no_keys(digest: bytes) -> int | None:
    return None


def auth(h: Headers, modes: frozenset[str] = CREDENTIALS) -> int | None:
    return run(authenticate(h, modes=modes, jwt_secret="j" * 40, key_owner=no_keys))


def test_missing_credential_is_401_with_a_challenge() -> None:
    with pytest.raises(GatewayError) as info:
        auth(headers())
    assert info.value.status == 401
    assert info.value.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize(
    "pairs",
    [
        [("Authorization", "Basic dXNlcjpwYXNz")],
        [("Authorization", "Bearer")],
        [("Authorization", "Bearer tk_" + "a" * 43)],
        [("X-API-Key", "tk_short")],
        [("Authorization", "Bearer x"), ("Authorization", "Bearer y")],
        [("Authorization", "Bearer tk_" + "a" * 43), ("X-API-Key", "tk_" + "b" * 43)],
        [("Authorization", "Bearer " + "e" * 20000)],
    ],
)
def test_bad_or_ambiguous_credentials_are_401(pairs: list[tuple[str, str]]) -> None:
    assert status_of(lambda: auth(headers(*pairs))) == 401


def test_identification_modes_alone_need_no_credential() -> None:
    assert auth(headers(("Authorization", "Bearer whatever")), frozenset({"header"})) is None
