"""Schemathesis against the real gateway, each API with its own credential: no 5xx, and
every answer as the merged OpenAPI says (`make fuzz` runs the same with a bigger budget)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from gateway.tests.factories import create_tenant, wait_for
from kit.stacks import Stack

# Per operation; `make fuzz` sets FUZZ_MAX_EXAMPLES=1000.
MAX_EXAMPLES = int(os.environ.get("FUZZ_MAX_EXAMPLES", "25"))
CHECKS = ",".join(
    (
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_schema_conformance",
        "response_headers_conformance",
    )
)


def schemathesis(gateway_url: str, *, paths: str, token: str, report: Path) -> str:
    """Run the schemathesis CLI on the gateway's /openapi.json; its output when it fails."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "schemathesis.cli",
            "run",
            f"{gateway_url}/openapi.json",
            "--checks",
            CHECKS,
            "--include-path-regex",
            paths,
            "--header",
            f"Authorization: Bearer {token}",
            "--max-examples",
            str(MAX_EXAMPLES),
            "--seed",
            os.environ.get("FUZZ_SEED", "1"),
            "--workers",
            "1",
            "--no-color",
            "--generation-database",
            "none",
            "--report-dir",
            str(report),
        ],
        capture_output=True,
        text=True,
        timeout=3000,
        check=False,
    )
    return "" if result.returncode == 0 else result.stdout[-20000:] + result.stderr[-4000:]


@pytest.mark.parametrize("api", ["users", "admin"])
def test_fuzzed_requests_get_no_5xx_and_answers_that_match_the_schema(
    api: str, fresh_stack: Callable[..., Stack], tmp_path: Path
) -> None:
    # A stack of its own: the admin run creates, changes and deletes tenants at random.
    stack = fresh_stack()
    gateway = stack.gateway.url
    admin = httpx.Client(
        base_url=gateway, headers={"Authorization": f"Bearer {stack.secrets.admin_token}"}
    )
    wait_for(
        lambda: "/users/{user_id}" in httpx.get(f"{gateway}/openapi.json").json()["paths"],
        within=10,
    )
    if api == "users":
        token, paths = create_tenant(admin)["api_key"], "^/users"
    else:
        token, paths = stack.secrets.admin_token, "^/admin"
    admin.close()
    failures = schemathesis(gateway, paths=paths, token=token, report=tmp_path)
    assert not failures, failures
