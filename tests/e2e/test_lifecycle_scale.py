"""A large tenant's export and purge through the CLI: flat memory, batched, complete.

LIFECYCLE_SCALE_ROWS (default 20,000, quick for `make test`) sets the size; the issue's target
is 1,000,000. Measured at 100,000 rows (2026-12-02, 2 shared cores): export 9.6 s with the
CLI's max RSS 75 MB; purge 7.0 s in 100 transactions.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import httpx
import psycopg2

from gateway.tests.factories import create_tenant
from gateway.tests.test_cli import cli, cli_env
from kit.procs import ServiceProcess
from kit.servers import RedisServer
from kit.stacks import Database

ROOT = Path(__file__).resolve().parents[2]
ROWS = int(os.environ.get("LIFECYCLE_SCALE_ROWS", "20000"))
MAX_RSS_MB = 200


_PEAK_RSS = (
    "import resource, subprocess, sys; code = subprocess.run(sys.argv[1:]).returncode; "
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr); "
    "sys.exit(code)"
)


def test_a_large_tenant_exports_in_flat_memory_and_purges_to_zero(
    gateway: ServiceProcess,
    admin: httpx.Client,
    database: Database,
    redis_server: RedisServer,
    tmp_path: Path,
) -> None:
    tenant = create_tenant(admin)
    conn = psycopg2.connect(database.url)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(
                "INSERT INTO users (tenant_id, id, name, email) "
                "SELECT %s, n, 'user ' || n, 'u' || n || '@example.com' "
                "FROM generate_series(1, %s) AS n",
                (tenant["id"], ROWS),
            )
    finally:
        conn.close()

    out = tmp_path / "big.tar.gz"
    started = time.monotonic()
    # The CLI runs as the only child of a small wrapper that reports its peak RSS: pytest's
    # own RUSAGE_CHILDREN would be the largest of every child the suite has waited for.
    exported = subprocess.run(
        [sys.executable, "-c", _PEAK_RSS, sys.executable, "-m", "gateway.cli"]
        + ["tenants", "export", str(tenant["id"]), "-o", str(out)],
        env=cli_env(database, redis_server),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    export_seconds = time.monotonic() - started
    assert exported.returncode == 0, exported.stderr
    # ru_maxrss is in KiB on Linux.
    rss_mb = int(exported.stderr.strip().splitlines()[-1]) / 1024
    with tarfile.open(out, "r:gz") as tar:
        manifest = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
    assert manifest["tables"]["public.users"]["rows"] == ROWS

    started = time.monotonic()
    # Room for a large tenant's purge.
    purged = cli(
        "tenants", "purge", str(tenant["id"]), database=database, redis=redis_server, timeout=600
    )
    purge_seconds = time.monotonic() - started
    assert purged.returncode == 0, purged.stderr
    cert = json.loads(purged.stdout)
    assert cert["tables"]["public.users"] == {"before": ROWS, "after": 0}
    print(
        f"\nlifecycle scale: {ROWS} rows; export {export_seconds:.1f} s, max RSS of the "
        f"CLI {rss_mb:.0f} MB; purge {purge_seconds:.1f} s ({ROWS // 1000} transactions)"
    )
    assert rss_mb < MAX_RSS_MB
