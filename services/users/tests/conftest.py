"""Fixtures of the users service's tests: the real process on the session's real PostgreSQL."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import psycopg2
import psycopg2.extensions
import pytest
from sqlalchemy import Engine

from kit.testing import Database
from services.tenancy.runtime import create_tenant_engine
from services.tenancy.signing import sign_headers

_tenant_names = itertools.count(1)


@pytest.fixture(scope="session")
def owner(database: Database) -> Iterator[psycopg2.extensions.connection]:
    """The owner's connection (autocommit): sets the scene the service's role then faces."""
    conn = psycopg2.connect(database.url, application_name="users-tests")
    conn.autocommit = True
    yield conn
    conn.close()


def owner_rows(
    owner: psycopg2.extensions.connection, sql: str, *args: Any
) -> list[tuple[Any, ...]]:
    """Rows of `sql` as the owner (a superuser in tests: no policy hides anything from it)."""
    with owner.cursor() as cur:
        cur.execute(sql, args)
        return cur.fetchall() if cur.description else []


@pytest.fixture
def make_tenant(owner: psycopg2.extensions.connection) -> Callable[[], int]:
    """A factory of fresh tenants (by the tutorial's INSERT); returns the new id."""

    def make() -> int:
        name = f"users-test-{uuid.uuid4().hex[:8]}-{next(_tenant_names)}"
        return int(
            owner_rows(owner, "INSERT INTO tenants (name) VALUES (%s) RETURNING id", name)[0][0]
        )

    return make


@pytest.fixture(scope="session")
def app_engine(database: Database) -> Iterator[Engine]:
    """An engine as the services' restricted role, with the tenant hooks installed."""
    engine = create_tenant_engine(database.app_url, application_name="users-tests")
    yield engine
    engine.dispose()


class SignedClient:
    """Requests to a service, signed for a tenant as the gateway would sign them."""

    def __init__(self, client: httpx.Client, secret: str, *, destination: str = "") -> None:
        self.client = client
        self.secret = secret
        self.destination = destination

    def headers(
        self, method: str, target: str, tenant: int, *, body: bytes = b"", **overrides: Any
    ) -> dict[str, str]:
        """The gateway's headers for this request (`now=` shifts the timestamp)."""
        return sign_headers(
            self.secret,
            # Default: the target's first segment, the prefix the gateway would route it by.
            destination=overrides.pop("destination", None)
            or self.destination
            or "/" + target.split("?")[0].split("/")[1],
            tenant_id=tenant,
            request_id=uuid.uuid4().hex,
            method=method,
            target=target,
            body=body,
            **overrides,
        )

    def request(self, method: str, target: str, tenant: int, **kwargs: Any) -> httpx.Response:
        """Send it signed over the exact body httpx will send (JSON, form or raw content)."""
        extra_headers = kwargs.pop("headers", {})
        built = self.client.build_request(method, target, **kwargs)
        body = built.read()
        built.headers.update(self.headers(method, target, tenant, body=body))
        built.headers.update(extra_headers)
        return self.client.send(built)


@pytest.fixture(scope="session")
def users_http(users_service: Any) -> Iterator[httpx.Client]:
    """A plain client on the session's users service process (no signature added)."""
    with httpx.Client(base_url=users_service.url, timeout=10, follow_redirects=False) as client:
        yield client


@pytest.fixture
def api(users_http: httpx.Client, secrets: Any) -> SignedClient:
    """Signed requests to the session's users service."""
    return SignedClient(users_http, secrets.signing_secret)
