"""SPEC §5's status table, row by row, plus hostile inputs, through real gateways over HTTP."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import socket
import time
from collections.abc import Callable, Iterator

import httpx
import jwt
import pytest

from gateway.apikeys import generate_key
from gateway.tests.factories import bearer, create_tenant, tenant_jwt
from kit.procs import ServiceProcess
from kit.testing import Secrets

NO_SUCH_TENANT = 10**12 + 7


@pytest.fixture
def client(gateway: ServiceProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gateway.url, timeout=10) as c:
        yield c


@pytest.fixture
def header_client(header_gateway: ServiceProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=header_gateway.url, timeout=10) as c:
        yield c


@pytest.fixture
def tenant(admin: httpx.Client) -> dict:  # type: ignore[type-arg]
    return create_tenant(admin)


def raw_request(url: str, header_lines: list[bytes]) -> tuple[int, dict]:  # type: ignore[type-arg]
    """A request written by hand, for what HTTP client libraries refuse to send."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        head = b"GET /users HTTP/1.1\r\nHost: x\r\n" + b"".join(h + b"\r\n" for h in header_lines)
        sock.sendall(head + b"Connection: close\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head_part, _, body = data.partition(b"\r\n\r\n")
    return int(head_part.split(b" ")[1]), json.loads(body)


# -- 401: credential required but missing; unknown, malformed or revoked key; bad JWT ------


def test_missing_credential_is_401_with_www_authenticate(client: httpx.Client) -> None:
    response = client.get("/users")
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert response.json() == {"detail": "credentials required"}


def test_identification_alone_is_not_a_credential(client: httpx.Client, tenant: dict) -> None:  # type: ignore[type-arg]
    for headers in ({"X-Tenant-ID": str(tenant["id"])}, {"Host": f"{tenant['slug']}.example.test"}):
        assert client.get("/users", headers=headers).status_code == 401


def test_unknown_malformed_and_revoked_keys_are_401(
    client: httpx.Client,
    admin: httpx.Client,
    tenant: dict,  # type: ignore[type-arg]
) -> None:
    admin.delete(
        f"/admin/tenants/{tenant['id']}/api-keys/{tenant['api_key_id']}"
    ).raise_for_status()
    for key in (generate_key(), "tk_tooshort", "tk_" + "!" * 43, tenant["api_key"]):
        for headers in (bearer(key), {"X-API-Key": key}):
            response = client.get("/users", headers=headers)
            assert response.status_code == 401, (key, headers)
            assert "detail" in response.json()


def test_key_of_a_deleted_tenant_is_404_then_401_once_purged(
    client: httpx.Client, admin: httpx.Client, tenant: dict
) -> None:  # type: ignore[type-arg]
    assert client.get("/users", headers=bearer(tenant["api_key"])).status_code == 200
    admin.delete(f"/admin/tenants/{tenant['id']}").raise_for_status()
    pending = client.get("/users", headers=bearer(tenant["api_key"]))
    assert pending.status_code == 404 and "detail" in pending.json()
    admin.delete(f"/admin/tenants/{tenant['id']}?purge=true").raise_for_status()
    assert client.get("/users", headers=bearer(tenant["api_key"])).status_code == 401


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _hand_signed(alg: str, claims: dict, key: bytes, digest: Callable = hashlib.sha256) -> str:  # type: ignore[type-arg]
    header = _b64(json.dumps({"alg": alg, "typ": "JWT"}).encode())
    signing_input = f"{header}.{_b64(json.dumps(claims).encode())}"
    return f"{signing_input}.{_b64(hmac.new(key, signing_input.encode(), digest).digest())}"


def test_bad_jwts_are_401(client: httpx.Client, secrets: Secrets, tenant: dict) -> None:  # type: ignore[type-arg]
    good_claims = {"tenant_id": tenant["id"], "exp": int(time.time()) + 60}
    secret = secrets.jwt_secret
    tokens = {
        "alg none": jwt.encode(good_claims, None, algorithm="none"),
        "HS512": _hand_signed("HS512", good_claims, secret.encode(), hashlib.sha512),
        "RS256 confusion": _hand_signed("RS256", good_claims, secret.encode()),
        "expired": tenant_jwt(secret, tenant["id"], expires_in=-60),
        "missing tenant_id": jwt.encode({"exp": good_claims["exp"]}, secret, algorithm="HS256"),
        "missing exp": jwt.encode({"tenant_id": tenant["id"]}, secret, algorithm="HS256"),
        "tenant_id string": tenant_jwt(secret, str(tenant["id"])),
        "tenant_id bool": tenant_jwt(secret, True),
        "other secret": tenant_jwt("another-secret-of-forty-characters-xxxxx", tenant["id"]),
        "garbage": "a.b.c",
    }
    assert client.get("/users", headers=bearer(tenant_jwt(secret, tenant["id"]))).status_code == 200
    for label, token in tokens.items():
        response = client.get("/users", headers=bearer(token))
        assert response.status_code == 401, label


# -- 400: header mode's missing X-Tenant-ID; repeated or malformed X-Tenant-ID --------------


def test_header_mode_without_tenant_header_is_400(header_client: httpx.Client) -> None:
    response = header_client.get("/users")
    assert response.status_code == 400
    assert response.json() == {"detail": "X-Tenant-ID header required"}


@pytest.mark.parametrize(
    "value", ["1, 2", "-1", "01", "0", "1.5", "+1", "one", "1 2", "99999999999999999999"]
)
def test_malformed_tenant_header_is_400(
    value: str,
    header_client: httpx.Client,
    client: httpx.Client,
    tenant: dict,  # type: ignore[type-arg]
) -> None:
    assert header_client.get("/users", headers={"X-Tenant-ID": value}).status_code == 400
    # With a valid credential too: a malformed name is refused, never ignored.
    assert (
        client.get(
            "/users", headers={**bearer(tenant["api_key"]), "X-Tenant-ID": value}
        ).status_code
        == 400
    )


def test_repeated_tenant_header_is_400(header_gateway: ServiceProcess, tenant: dict) -> None:  # type: ignore[type-arg]
    tid = str(tenant["id"]).encode()
    status, body = raw_request(header_gateway.url, [b"X-Tenant-ID: " + tid, b"X-Tenant-ID: " + tid])
    assert (status, body) == (400, {"detail": "X-Tenant-ID must be sent once"})


def test_leading_space_is_http_whitespace_and_cannot_name_another_tenant(
    gateway: ServiceProcess,
    admin: httpx.Client,
    tenant: dict,  # type: ignore[type-arg]
) -> None:
    # RFC 9110 strips optional whitespace around a field value before anyone sees it: " 1"
    # is "1". What matters is that it never lets a key name another tenant.
    other = create_tenant(admin)
    key = b"Authorization: Bearer " + tenant["api_key"].encode()
    assert raw_request(gateway.url, [key, b"X-Tenant-ID:  " + str(tenant["id"]).encode()])[0] == 200
    assert raw_request(gateway.url, [key, b"X-Tenant-ID:  " + str(other["id"]).encode()])[0] == 403


def test_huge_headers_are_refused_not_forwarded(client: httpx.Client, tenant: dict) -> None:  # type: ignore[type-arg]
    huge = client.get("/users", headers={**bearer(tenant["api_key"]), "X-Tenant-ID": "1" * 70_000})
    assert huge.status_code == 431
    padding = client.get("/users", headers={**bearer(tenant["api_key"]), "X-Pad": "p" * 100_000})
    assert padding.status_code == 431
    assert client.get("/users", headers=bearer("tk_" + "a" * 100_000)).status_code in (401, 431)


# -- 404 / 403: the tenant itself -------------------------------------------------------------


def test_tenant_that_does_not_exist_is_404(
    client: httpx.Client, header_client: httpx.Client, secrets: Secrets
) -> None:
    assert (
        header_client.get("/users", headers={"X-Tenant-ID": str(NO_SUCH_TENANT)}).status_code == 404
    )
    token = tenant_jwt(secrets.jwt_secret, NO_SUCH_TENANT)
    response = client.get("/users", headers=bearer(token))
    assert response.status_code == 404
    assert response.json() == {"detail": "tenant not found"}


def test_suspended_tenant_is_403_in_every_mode(
    client: httpx.Client,
    header_client: httpx.Client,
    admin: httpx.Client,
    secrets: Secrets,
    tenant: dict,  # type: ignore[type-arg]
) -> None:
    admin.patch(f"/admin/tenants/{tenant['id']}", json={"status": "suspended"}).raise_for_status()
    for response in (
        client.get("/users", headers=bearer(tenant["api_key"])),
        client.get("/users", headers=bearer(tenant_jwt(secrets.jwt_secret, tenant["id"]))),
        header_client.get("/users", headers={"X-Tenant-ID": str(tenant["id"])}),
    ):
        assert response.status_code == 403
        assert response.json() == {"detail": "tenant is suspended"}


def test_credential_and_identification_disagreeing_is_403(
    client: httpx.Client,
    admin: httpx.Client,
    tenant: dict,  # type: ignore[type-arg]
) -> None:
    other = create_tenant(admin)
    key = bearer(tenant["api_key"])
    for extra in (
        {"X-Tenant-ID": str(other["id"])},
        {"X-Tenant-ID": str(NO_SUCH_TENANT)},
        {"Host": f"{other['slug']}.example.test"},
        {"Host": "no-such-tenant-here.example.test"},
    ):
        response = client.post("/users", json={"name": "x"}, headers={**key, **extra})
        assert response.status_code == 403, extra
    assert client.get("/users", headers=key).json() == []


# -- 429, 404 route, 503, 504, 413 ------------------------------------------------------------


def test_over_the_rate_limit_is_429_with_retry_after(
    client: httpx.Client, admin: httpx.Client
) -> None:
    tenant = create_tenant(admin, rate_limit_per_second=2)
    responses = [client.get("/users", headers=bearer(tenant["api_key"])) for _ in range(6)]
    assert responses[0].status_code == 200
    assert responses[0].headers["ratelimit-limit"] == "2"
    assert (
        "ratelimit-remaining" in responses[0].headers and "ratelimit-reset" in responses[0].headers
    )
    refused = [r for r in responses if r.status_code == 429]
    assert refused
    assert int(refused[0].headers["retry-after"]) >= 1


def test_no_route_is_404(client: httpx.Client, tenant: dict) -> None:  # type: ignore[type-arg]
    for path in ("/orders", "/", "/userz", "/metricsz"):
        assert client.get(path, headers=bearer(tenant["api_key"])).status_code == 404, path


def test_users_service_down_is_503_within_five_seconds(
    start_service: Callable[..., ServiceProcess],
    tenant: dict,  # type: ignore[type-arg]
) -> None:
    users = start_service("users")
    gateway = start_service("gateway", env={"USERS_URL": users.url})
    assert httpx.get(f"{gateway.url}/users", headers=bearer(tenant["api_key"])).status_code == 200
    users.stop()
    started = time.monotonic()
    response = httpx.get(f"{gateway.url}/users", headers=bearer(tenant["api_key"]), timeout=10)
    assert response.status_code == 503
    assert time.monotonic() - started <= 5
    assert httpx.get(f"{gateway.url}/readyz", timeout=10).status_code == 503


def test_upstream_too_slow_is_504(
    start_service: Callable[..., ServiceProcess],
    users_service: ServiceProcess,
    hanging_upstream: str,
    tenant: dict,  # type: ignore[type-arg]
) -> None:
    gateway = start_service(
        "gateway",
        env={
            "GATEWAY_ROUTES": f"/users={users_service.url},/slow={hanging_upstream}",
            "UPSTREAM_TIMEOUT_SECONDS": "1",
        },
        ready_path="/healthz",
    )
    response = httpx.get(f"{gateway.url}/slow/x", headers=bearer(tenant["api_key"]), timeout=10)
    assert response.status_code == 504
    ok = httpx.get(f"{gateway.url}/users", headers=bearer(tenant["api_key"]), timeout=10)
    assert ok.status_code == 200


def test_body_over_one_mib_is_413(client: httpx.Client, tenant: dict) -> None:  # type: ignore[type-arg]
    response = client.post(
        "/users",
        content=b"x" * (1024 * 1024 + 1),
        headers={**bearer(tenant["api_key"]), "Content-Type": "application/json"},
    )
    assert response.status_code == 413
    assert client.get("/users", headers=bearer(tenant["api_key"])).json() == []
