"""Tenants and credentials for gateway tests, made through the real admin API."""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx
import jwt

from gateway.invalidation import SECOND_PASS_DELAY_SECONDS


def unique_name(label: str = "tenant") -> str:
    """A tenant name no other test (or test run on the same database) uses."""
    return f"{label} {uuid.uuid4().hex[:12]}"


def create_tenant(admin: httpx.Client, **fields: Any) -> dict[str, Any]:
    """POST /admin/tenants; the tenant plus its first `api_key`."""
    body = {"name": unique_name(), **fields}
    response = admin.post("/admin/tenants", json=body)
    assert response.status_code == 201, response.text
    return response.json()


def settled_tenant(admin: httpx.Client, **fields: Any) -> dict[str, Any]:
    """A new tenant once its create's repeated invalidation (0.5 s later) has passed.

    A test that warms a cache before then gets it flushed by that repeat, whatever the
    change under test did: it would pass with that change's own invalidation removed.
    """
    tenant = create_tenant(admin, **fields)
    time.sleep(SECOND_PASS_DELAY_SECONDS + 0.3)
    return tenant


def tenant_jwt(secret: str, tenant_id: Any, *, expires_in: int = 300, **extra: Any) -> str:
    """An HS256 token as a tenant's identity provider would issue it."""
    claims = {"tenant_id": tenant_id, "exp": int(time.time()) + expires_in, **extra}
    return jwt.encode(claims, secret, algorithm="HS256")


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def wait_for(predicate: Any, *, within: float, interval: float = 0.02) -> float:
    """Poll until predicate() is true; return the seconds it took (fails after `within`)."""
    start = time.monotonic()
    while True:
        if predicate():
            return time.monotonic() - start
        if time.monotonic() - start > within:
            raise AssertionError(f"condition not met within {within} s")
        time.sleep(interval)
