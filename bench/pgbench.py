"""Database reads driven by pgbench: a C client, so PostgreSQL is what gets measured.

A Python client doing the same reads spends more CPU than the server it measures (and on
2 cores takes it from the server), which flattens every ratio towards 1.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from bench.measure import Sample

_TPS = re.compile(r"tps = ([\d.]+) \(without initial connection time\)")

# One read, as the users service does GET /users/{id} then GET /users?limit=20: the tenant
# is set in the first statement's round trip (`\;` joins them into one message).
TENANT_READ = r"""
\set t random(1, :tenants)
\set id random(1, :per_tenant)
BEGIN;
SET LOCAL app.tenant_id = :t \;
SELECT id, tenant_id, name, email FROM users WHERE tenant_id = :t AND id = :id;
SELECT id, tenant_id, name, email FROM users WHERE tenant_id = :t
    ORDER BY id LIMIT 20;
COMMIT;
"""


class PgbenchError(RuntimeError):
    """pgbench failed: a read found nothing, or it could not connect."""


@dataclass(frozen=True, slots=True)
class Pgbench:
    """A pgbench binary, run with a custom script and every transaction logged."""

    binary: Path

    def run(
        self,
        url: str,
        *,
        script: str,
        variables: dict[str, int],
        clients: int,
        transactions: int,
    ) -> Sample:
        """`transactions` runs of `script` from `clients` connections; every latency logged."""
        per_client = max(1, transactions // clients)
        with tempfile.TemporaryDirectory(prefix="tenantkit-pgbench-") as tmp:
            folder = Path(tmp)
            script_file = folder / "read.sql"
            script_file.write_text(script)
            argv = [
                str(self.binary),
                "--no-vacuum",
                "--file",
                str(script_file),
                "--client",
                str(clients),
                "--jobs",
                str(min(clients, 2)),
                "--transactions",
                str(per_client),
                "--log",
                "--log-prefix",
                str(folder / "tx"),
            ]
            for name, value in variables.items():
                argv += ["--define", f"{name}={value}"]
            # pgbench writes its logs in its working folder; the URL is libpq's dbname.
            result = subprocess.run(
                [*argv, url], cwd=folder, capture_output=True, text=True, timeout=600, check=False
            )
            found = _TPS.search(result.stdout)
            if result.returncode != 0 or found is None:
                tail = (result.stderr or result.stdout).strip().splitlines()[-3:]
                raise PgbenchError(f"pgbench exited with {result.returncode}: {' | '.join(tail)}")
            latencies = [
                int(line.split()[2]) / 1_000_000
                for log in folder.glob("tx.*")
                for line in log.read_text().splitlines()
            ]
        done = per_client * clients
        return Sample(
            operations=done,
            concurrency=clients,
            seconds=done / float(found.group(1)),
            latencies=latencies,
        )


def find_pgbench(bindir: Path) -> Pgbench | None:
    """pgbench next to the server's binaries (system or embedded), else on PATH."""
    candidate = bindir / "pgbench"
    if candidate.exists():
        return Pgbench(candidate)
    on_path = shutil.which("pgbench")
    return Pgbench(Path(on_path)) if on_path else None
