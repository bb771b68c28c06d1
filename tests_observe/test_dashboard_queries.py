"""Every query of the Grafana dashboard returns data from a real Prometheus scraping a real
stack, so a renamed metric breaks this test rather than the dashboard.

Needs Debian's `prometheus` package (`make test-observe`, run by .ci/run), not `make test`.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from kit.ports import free_port
from kit.procs import ServiceProcess
from kit.testing import Secrets

ROOT = Path(__file__).resolve().parents[1]
DASHBOARD = ROOT / "deploy" / "observe" / "grafana-dashboard.json"


def _hostport(url: str) -> str:
    return urlsplit(url).netloc


@pytest.fixture
def prometheus(
    gateway: ServiceProcess, users_service: ServiceProcess, secrets: Secrets, tmp_path: Path
) -> Iterator[str]:
    """Debian's prometheus scraping the session's gateway and users service every second."""
    binary = shutil.which("prometheus")
    assert binary, "install Debian's prometheus package (make test-observe does in CI)"
    token = tmp_path / "admin-token"
    token.write_text(secrets.admin_token)
    config = tmp_path / "prometheus.yml"
    config.write_text(
        json.dumps(  # JSON is YAML
            {
                "global": {"scrape_interval": "1s"},
                "scrape_configs": [
                    {
                        "job_name": "gateway",
                        "authorization": {"credentials_file": str(token)},
                        "static_configs": [{"targets": [_hostport(gateway.url)]}],
                    },
                    {
                        "job_name": "users",
                        "static_configs": [{"targets": [_hostport(users_service.url)]}],
                    },
                ],
            }
        )
    )
    port = free_port()
    log = (tmp_path / "prometheus.log").open("w")
    process = subprocess.Popen(
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)
        log.close()


def _query(prometheus: str, expr: str) -> list[object]:
    try:
        answer = httpx.get(f"{prometheus}/api/v1/query", params={"query": expr}, timeout=5)
    except httpx.TransportError:
        return []
    if answer.status_code != 200:
        return []
    return answer.json()["data"]["result"]  # type: ignore[no-any-return]


def test_every_dashboard_query_returns_data(
    prometheus: str, gateway: ServiceProcess, admin: httpx.Client
) -> None:
    # One request in flight at a time: a burst of parallel ones shows fairness refusals.
    created = admin.post(
        "/admin/tenants", json={"name": f"observe-{uuid.uuid4().hex[:8]}", "max_in_flight": 1}
    )
    assert created.status_code == 201, created.text
    key = {"Authorization": f"Bearer {created.json()['api_key']}"}
    queries = [
        target["expr"]
        for panel in json.loads(DASHBOARD.read_text())["panels"]
        for target in panel["targets"]
    ]
    assert len(queries) >= 8
    missing = queries
    deadline = time.monotonic() + 60
    with httpx.Client(base_url=gateway.url, headers=key, timeout=10) as client:
        while missing and time.monotonic() < deadline:
            # Traffic of every kind the dashboard shows: reads, writes, a tenant's 404.
            client.post("/users", json={"name": "dashboard"})
            client.get("/users")
            client.get("/users/999999999")
            with ThreadPoolExecutor(8) as burst:
                list(burst.map(lambda _: client.get("/users"), range(8)))
            time.sleep(0.2)
            missing = [q for q in missing if not _query(prometheus, q)]
    assert not missing, f"dashboard queries without data: {missing}"
