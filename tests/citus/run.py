"""`make test-citus`: tenantkit on a Citus coordinator and two workers, end to end.

1. Find a PostgreSQL with Citus installed; without one, say so in one line and exit 1 (never
   a silent pass).
2. Start a coordinator and two workers (kit.servers, `shared_preload_libraries=citus`,
   `wal_level=logical`) on free loopback ports; Citus on each; the workers added.
3. Migrations on the coordinator, then the SQL of docs/scaling.md §6 as written there.
4. The Citus suite (tests/citus) and the end-to-end isolation tests (tests/e2e) against a
   users service and gateway on the coordinator (kit.testing, through E2E_DATABASE_URL).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from cluster import ROOT, CitusCluster, citus_installation, prepare_database  # noqa: E402

from kit import children  # noqa: E402
from kit.servers import ServerError  # noqa: E402

# The end-to-end files that run unchanged on Citus: isolation, per-tenant ids, 404s, 409s,
# tenant deletion, all through the gateway.
E2E_FILES = [
    "tests/e2e/test_gateway_isolation.py",
    "tests/e2e/test_users_through_gateway.py",
]
SUITE_TIMEOUT_SECONDS = 1800


def _workdir() -> Path:
    # PostgreSQL may run as `nobody` (we are root): the folder must be searchable by it.
    path = Path(tempfile.mkdtemp(prefix="tenantkit-citus-", dir="/tmp"))
    path.chmod(0o711)
    return path


def main() -> int:
    binaries = citus_installation()
    if binaries is None:
        print(
            "test-citus: no PostgreSQL with Citus installed (citus.so and citus.control not "
            "found in any installation); see docs/scaling.md §6 for the versions it was run with",
            file=sys.stderr,
        )
        return 1
    workdir = _workdir()
    cluster = CitusCluster.create(workdir, binaries)
    status = 1
    try:
        cluster.start()
        database = prepare_database(cluster, name="tenantkit_citus", log_dir=workdir / "logs")
        print(
            f"test-citus: PostgreSQL {binaries.major} with Citus, coordinator on "
            f"127.0.0.1:{cluster.coordinator.port}, workers on "
            + ", ".join(f"127.0.0.1:{w.port}" for w in cluster.workers),
            flush=True,
        )
        args = ["-c", "tests/citus/pytest.ini", "tests/citus", *E2E_FILES, *sys.argv[1:]]
        env = {**os.environ, "E2E_DATABASE_URL": database.url, "TK_CITUS": "1"}
        status = subprocess.call(
            [sys.executable, "-m", "pytest", *args],
            cwd=ROOT,
            env=env,
            timeout=SUITE_TIMEOUT_SECONDS,
        )
    except (ServerError, RuntimeError) as exc:
        print(f"test-citus: {exc}", file=sys.stderr)
    finally:
        cluster.stop()
        children.stop_all()
    if status == 0:
        shutil.rmtree(workdir, ignore_errors=True)
    else:
        print(f"test-citus: servers' data and logs kept in {workdir}", file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main())
