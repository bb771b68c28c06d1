"""Export the large tenant through the gateway under writes; memory and row hashes checked.

Before the export, a snapshot query (REPEATABLE READ, as the services' role) hashes the
tenant's rows, rendered as the archive renders them (row_to_json, UTC, key order). Then
writers create users of the tenant while the gateway exports it, and the gateway's RSS is
sampled. The archive must hold exactly the snapshot's rows, followed by only rows the
writers created (those committed before the export's own snapshot), each equal to the
database's row: a torn or non-snapshot export fails one of the two.
"""

from __future__ import annotations

import hashlib
import json
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
from sqlalchemy import Connection, text

from bench.lifecycle.figures import Figure
from bench.lifecycle.samplers import RssSampler
from bench.lifecycle.traffic import Tenant, Writers
from gateway import tenantdata

MAX_RSS_MB = 200
WRITTEN_TABLE = "public.users"


@dataclass(frozen=True, slots=True)
class Digest:
    rows: int
    sha256: str


def _render(conn: Connection, table: tenantdata.Table, tenant_id: int, where: str = "") -> str:
    cols = ", ".join(tenantdata.quote(c) for c in table.columns)
    conn.execute(text("SELECT set_config('TimeZone', 'UTC', true)"))
    conn.execute(text("SELECT set_config('statement_timeout', '600s', true)"))
    tenantdata.enter_tenant(conn, tenant_id)
    return (
        f"SELECT row_to_json(s)::text FROM (SELECT {cols} FROM {table.name} "
        f"WHERE tenant_id = :t {where} ORDER BY {table.order_by()}) AS s"
    )


def snapshot(app_url: str, tenant_id: int) -> dict[str, Digest]:
    """Per tenant table: the tenant's rows and the SHA-256 of their lines, one snapshot."""
    engine = tenantdata.make_app_engine(app_url)
    digests: dict[str, Digest] = {}
    try:
        with engine.connect() as conn:
            conn = conn.execution_options(isolation_level="REPEATABLE READ")
            with conn.begin():
                for table in tenantdata.tables(conn):
                    query = text(_render(conn, table, tenant_id))
                    result = conn.execution_options(stream_results=True, yield_per=1000).execute(
                        query, {"t": tenant_id}
                    )
                    digest, rows = hashlib.sha256(), 0
                    for (line,) in result:
                        digest.update(line.encode() + b"\n")
                        rows += 1
                    digests[table.name] = Digest(rows, digest.hexdigest())
    finally:
        engine.dispose()
    return digests


def _database_lines(app_url: str, tenant_id: int, ids: list[int]) -> set[str]:
    """The database's rendering of the tenant's users with these ids, now."""
    engine = tenantdata.make_app_engine(app_url)
    try:
        with engine.connect() as conn, conn.begin():
            table = next(t for t in tenantdata.tables(conn) if t.name == WRITTEN_TABLE)
            query = text(_render(conn, table, tenant_id, "AND id = ANY(:ids)"))
            return set(conn.execute(query, {"t": tenant_id, "ids": ids}).scalars())
    finally:
        engine.dispose()


def _download(gateway_url: str, admin_token: str, tenant_id: int, out: Path) -> None:
    headers = {"Authorization": f"Bearer {admin_token}"}
    url = f"{gateway_url}/admin/tenants/{tenant_id}/export"
    with (
        httpx.stream("GET", url, headers=headers, timeout=httpx.Timeout(30, read=3600)) as response,
        out.open("wb") as sink,
    ):
        if response.status_code != 200:
            raise RuntimeError(f"export answered {response.status_code}: {response.read()[:200]!r}")
        for chunk in response.iter_bytes(1024 * 1024):
            sink.write(chunk)


def export_under_writes(
    *,
    gateway_url: str,
    admin_token: str,
    gateway_pid: int,
    app_url: str,
    tenant: Tenant,
    workdir: Path,
) -> list[Figure]:
    """Export `tenant` through the gateway while it is written to; the export's figures."""
    before = snapshot(app_url, tenant.id)
    out = workdir / "export.tar.gz"
    with RssSampler(gateway_pid) as rss, Writers(gateway_url, tenant) as writers:
        started = time.monotonic()
        _download(gateway_url, admin_token, tenant.id, out)
        seconds = time.monotonic() - started
    if writers.failures:
        raise RuntimeError(f"writes failed during the export: {writers.failures[:3]}")

    base_equal, extra_lines, archived, manifest_ok = True, [], 0, True
    with tarfile.open(out, "r:gz") as tar:
        manifest = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
        for name, digest in before.items():
            entry = manifest["tables"][name]
            handle = tar.extractfile(entry["file"])
            assert handle is not None
            base, whole, rows = hashlib.sha256(), hashlib.sha256(), 0
            for line in handle:
                rows += 1
                whole.update(line)
                if rows <= digest.rows:
                    base.update(line)
                else:
                    extra_lines.append(line.decode().rstrip("\n"))
            archived += rows
            base_equal &= base.hexdigest() == digest.sha256
            manifest_ok &= whole.hexdigest() == entry["sha256"] and rows == entry["rows"]
    extra_ids = [int(json.loads(line)["id"]) for line in extra_lines]
    extra_equal = set(extra_ids) <= writers.acknowledged and set(extra_lines) == (
        _database_lines(app_url, tenant.id, extra_ids) if extra_ids else set()
    )
    base_rows = sum(d.rows for d in before.values())
    return [
        Figure(
            "export",
            f"{archived:,} rows, {out.stat().st_size / 1024**2:.1f} MB gzip tar, {seconds:.1f} s "
            f"through the gateway ({archived / seconds:,.0f} rows/s)",
        ),
        Figure(
            "export rss",
            f"gateway {rss.first_mb:.0f} MB before, peak {rss.peak_mb:.0f} MB "
            f"(+{rss.peak_mb - rss.first_mb:.0f} MB; {len(rss.samples)} samples, 50 ms apart)",
            f"peak < {MAX_RSS_MB} MB",
            rss.peak_mb < MAX_RSS_MB,
        ),
        Figure(
            "export hashes",
            f"{base_rows:,} rows {'equal' if base_equal else 'DIFFER from'} the snapshot "
            f"query's SHA-256; each file {'matches' if manifest_ok else 'DOES NOT match'} "
            "its manifest",
            "equal",
            base_equal and manifest_ok,
        ),
        Figure(
            "export writes",
            f"{len(writers.acknowledged):,} users created during the export, {len(extra_ids):,} "
            f"of them in its snapshot, {'each' if extra_equal else 'NOT each'} equal to the "
            "database's row",
            "only acknowledged rows, as stored",
            extra_equal,
        ),
    ]
