"""W3C traceparent at the gateway: continued (same trace, new parent) or started, never trusted
blindly, and outside the signature (the echo upstream verifies it as a service would)."""

from __future__ import annotations

import re
from secrets import token_hex

import httpx
import pytest

from gateway.tests.factories import create_tenant

_TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")


def forwarded_traceparent(client: httpx.Client, key: str, *values: str) -> re.Match[str]:
    headers = [("Authorization", f"Bearer {key}"), *(("traceparent", v) for v in values)]
    response = client.get("/echo/trace", headers=headers)
    assert response.status_code == 200, response.text  # the signature still holds
    sent = [v for k, v in response.json()["headers"] if k == "traceparent"]
    assert len(sent) == 1, sent
    match = _TRACEPARENT.match(sent[0])
    assert match, sent
    return match


def test_a_callers_trace_is_continued_with_the_gateway_as_parent(
    echo_client: httpx.Client, echo_admin: httpx.Client
) -> None:
    key = create_tenant(echo_admin)["api_key"]
    trace_id, caller = token_hex(16), token_hex(8)
    match = forwarded_traceparent(echo_client, key, f"00-{trace_id}-{caller}-01")
    assert match[1] == trace_id
    assert match[2] != caller  # the upstream's parent is the gateway's span, not the caller
    assert match[3] == "01"


@pytest.mark.parametrize(
    "values",
    [
        (),
        ("junk",),
        (f"00-{'0' * 32}-{token_hex(8)}-01",),  # all-zero trace id: invalid per W3C
        (f"00-{token_hex(16)}-{token_hex(8)}-01", f"00-{token_hex(16)}-{token_hex(8)}-01"),
        (f"00-{token_hex(16).upper()}-{token_hex(8)}-01",),
    ],
)
def test_no_or_a_bad_traceparent_starts_a_new_trace(
    echo_client: httpx.Client, echo_admin: httpx.Client, values: tuple[str, ...]
) -> None:
    key = create_tenant(echo_admin)["api_key"]
    match = forwarded_traceparent(echo_client, key, *values)
    assert all(match[1] not in v.lower() for v in values)
    assert match[1] != "0" * 32
