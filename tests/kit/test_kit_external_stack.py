"""A suite run against a stack that outlives it (E2E_GATEWAY_URL) purges the tenants it made."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

import httpx

from kit.procs import ServiceProcess, child_env
from kit.stacks import Secrets

INNER_SESSION = """
def test_makes_a_tenant(admin):
    made = admin.post("/admin/tenants", json={"name": "%s"})
    assert made.status_code == 201, made.text
"""


def test_a_session_on_an_external_stack_purges_the_tenants_it_created(
    gateway: ServiceProcess, admin: httpx.Client, secrets: Secrets, tmp_path: Path
) -> None:
    kept = admin.post("/admin/tenants", json={"name": f"kept {uuid.uuid4().hex[:12]}"}).json()
    name = f"inner {uuid.uuid4().hex[:12]}"
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    (tmp_path / "test_inner.py").write_text(INNER_SESSION % name)
    env = {"E2E_GATEWAY_URL": gateway.url, "E2E_ADMIN_TOKEN": secrets.admin_token}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "kit.testing", "-p", "no:cacheprovider", "-q"],
        cwd=tmp_path,
        env=child_env(env),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    names = {t["name"] for t in admin.get("/admin/tenants").json()}
    assert name not in names
    assert kept["name"] in names  # what existed before the session is not its to purge
    admin.delete(f"/admin/tenants/{kept['id']}", params={"purge": "true"})
