"""A tenant's data as a gzip tar: `manifest.json` and one JSON Lines file per tenant table.

Export reads every table from one REPEATABLE READ snapshot through a server-side cursor
into spool files on disk (memory stays flat whatever the tenant's size), then writes the
tar. Import checks every file against the manifest's SHA-256 and row count before it writes
anything, then loads all tables in one transaction under the new tenant.
"""

from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import io
import json
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError

from gateway import store
from gateway.placements import Placements
from gateway.tenantdata import Progress, Table, enter_tenant, quote, tables
from services.tenancy.placements import SHARED

FORMAT = "tenantkit-export/1"
MANIFEST = "manifest.json"
FETCH_ROWS = 1000
IMPORT_BATCH_ROWS = 1000
# A hostile archive (a gzip bomb, one endless line) must not fill the disk or the memory.
MAX_UNPACKED_BYTES = 8 * 1024**3
MAX_LINE_BYTES = 16 * 1024**2
# The export's statements (one FETCH each) may take longer than a request's 4 s.
EXPORT_STATEMENT_TIMEOUT = "60s"


class BadArchive(Exception):
    """The archive is not one this kit wrote, or it was changed since (answered 422)."""


@dataclass(frozen=True, slots=True)
class Archive:
    manifest: dict[str, Any]
    files: dict[str, Path]


def _file_name(table: str) -> str:
    return f"{table}.jsonl"


def export(
    engine: Engine,
    tenant: dict[str, Any],
    revision: str | None,
    workdir: Path,
    progress: Progress | None = None,
) -> Path:
    """Write the tenant's archive under `workdir` and return its path."""
    entries: dict[str, dict[str, Any]] = {}
    with engine.connect() as conn:
        conn = conn.execution_options(isolation_level="REPEATABLE READ")
        with conn.begin():
            conn.execute(text("SET TRANSACTION READ ONLY"))
            enter_tenant(conn, tenant["id"])
            # Text rendering of timestamps must not depend on the server's time zone.
            conn.execute(text("SELECT set_config('TimeZone', 'UTC', true)"))
            conn.execute(
                text("SELECT set_config('statement_timeout', :v, true)"),
                {"v": EXPORT_STATEMENT_TIMEOUT},
            )
            for table in tables(conn):
                entries[table.name] = _spool(conn, table, tenant["id"], workdir, progress)
    manifest = {
        "format": FORMAT,
        "tenant": tenant,
        "schema_revision": revision,
        "exported_at": dt.datetime.now(dt.UTC).isoformat(),
        "tables": entries,
    }
    out = workdir / "export.tar.gz"
    with tarfile.open(out, "w:gz") as tar:
        _add(tar, MANIFEST, json.dumps(manifest, indent=2, sort_keys=True).encode())
        for entry in entries.values():
            tar.add(workdir / entry["file"], arcname=entry["file"])
    return out


def _spool(
    conn: Any, table: Table, tenant_id: int, workdir: Path, progress: Progress | None
) -> dict[str, Any]:
    cols = ", ".join(quote(c) for c in table.columns)
    query = text(
        f"SELECT row_to_json(s)::text FROM (SELECT {cols} FROM {table.name} "
        f"WHERE tenant_id = :t ORDER BY {table.order_by()}) AS s"
    )
    digest, rows = hashlib.sha256(), 0
    path = workdir / _file_name(table.name)
    with path.open("wb") as out:
        result = conn.execution_options(stream_results=True, yield_per=FETCH_ROWS).execute(
            query, {"t": tenant_id}
        )
        for (line,) in result:
            data = line.encode() + b"\n"
            digest.update(data)
            out.write(data)
            rows += 1
            if progress and rows % (FETCH_ROWS * 100) == 0:
                progress(f"{table.name}: {rows} rows exported")
    if progress:
        progress(f"{table.name}: {rows} rows exported")
    return {
        "file": path.name,
        "rows": rows,
        "sha256": digest.hexdigest(),
        "columns": table.columns,
    }


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(data))


def open_archive(path: Path, workdir: Path) -> Archive:
    """Unpack and verify an archive; BadArchive when anything does not match its manifest."""
    try:
        with tarfile.open(path, "r:gz") as tar:
            members = {m.name: m for m in tar.getmembers()}
            manifest = _manifest(tar, members)
            files: dict[str, Path] = {}
            for table, entry in manifest["tables"].items():
                files[table] = _verified(tar, members, table, entry, workdir)
    except (tarfile.TarError, gzip.BadGzipFile, EOFError, OSError) as exc:
        raise BadArchive(f"not a readable gzip tar: {exc}") from exc
    return Archive(manifest=manifest, files=files)


def _manifest(tar: tarfile.TarFile, members: dict[str, tarfile.TarInfo]) -> dict[str, Any]:
    member = members.get(MANIFEST)
    handle = tar.extractfile(member) if member is not None and member.isfile() else None
    if handle is None:
        raise BadArchive("manifest.json is missing")
    try:
        manifest = json.loads(handle.read(16 * 1024 * 1024))
    except ValueError as exc:
        raise BadArchive("manifest.json is not JSON") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BadArchive(f"manifest.json is not a {FORMAT} manifest")
    if not isinstance(manifest.get("tables"), dict) or not isinstance(manifest.get("tenant"), dict):
        raise BadArchive("manifest.json lacks its tenant or tables")
    return manifest


def _verified(
    tar: tarfile.TarFile,
    members: dict[str, tarfile.TarInfo],
    table: str,
    entry: Any,
    workdir: Path,
) -> Path:
    if not isinstance(entry, dict) or entry.get("file") != _file_name(table):
        raise BadArchive(f"manifest entry for {table} is malformed")
    member = members.get(entry["file"])
    handle = tar.extractfile(member) if member is not None and member.isfile() else None
    if handle is None:
        raise BadArchive(f"{entry['file']} is missing")
    # Our own file name, not the member's: nothing in the archive chooses a path here.
    out = workdir / f"table-{len(list(workdir.iterdir()))}.jsonl"
    digest, rows, size = hashlib.sha256(), 0, 0
    with out.open("wb") as sink:
        while chunk := handle.read(1024 * 1024):
            size += len(chunk)
            if size > MAX_UNPACKED_BYTES:
                raise BadArchive(f"{entry['file']} unpacks to more than {MAX_UNPACKED_BYTES} bytes")
            digest.update(chunk)
            sink.write(chunk)
            rows += chunk.count(b"\n")
    if digest.hexdigest() != entry.get("sha256") or rows != entry.get("rows"):
        raise BadArchive(f"{entry['file']} does not match its SHA-256 or row count in the manifest")
    return out


def load(
    engine: Engine, tenant_id: int, archive: Archive, progress: Progress | None = None
) -> None:
    """Insert the archive's rows as `tenant_id`'s, every table in one transaction."""
    with engine.connect() as conn, conn.begin():
        enter_tenant(conn, tenant_id)
        current = {t.name: t for t in tables(conn)}
        unknown = [t for t in archive.manifest["tables"] if t not in current]
        if unknown:
            raise BadArchive(f"table {unknown[0]} does not exist in this database")
        for table in current.values():  # parents first
            entry = archive.manifest["tables"].get(table.name)
            if entry is None:
                continue
            columns = [str(c) for c in entry.get("columns", [])]
            missing = [c for c in columns if c not in table.columns]
            if missing:
                raise BadArchive(f"{table.name} has no column {missing[0]} here")
            _load_table(conn, table.name, columns, archive.files[table.name], tenant_id, progress)


def _load_table(
    conn: Any,
    table: str,
    columns: list[str],
    path: Path,
    tenant_id: int,
    progress: Progress | None,
) -> None:
    cols = ", ".join(quote(c) for c in columns)
    picked = ", ".join(f"r.{quote(c)}" for c in columns)
    # The ids are inserted as they were: the row-numbering trigger moves the tenant's counter
    # past each explicit id, so rows created later never collide with imported ones.
    insert = text(
        f"INSERT INTO {table} (tenant_id, {cols}) SELECT :tenant, {picked} "
        f"FROM json_populate_recordset(NULL::{table}, CAST(:rows AS json)) AS r"
    )
    loaded = 0
    with path.open("rb") as lines:
        batch: list[bytes] = []
        while line := lines.readline(MAX_LINE_BYTES + 1):
            if len(line) > MAX_LINE_BYTES:
                raise BadArchive(f"a row of {table} is longer than {MAX_LINE_BYTES} bytes")
            batch.append(line)
            if len(batch) == IMPORT_BATCH_ROWS:
                loaded += _insert(conn, insert, batch, tenant_id)
                batch = []
        loaded += _insert(conn, insert, batch, tenant_id)
    if progress:
        progress(f"{table}: {loaded} rows imported")


def _insert(conn: Any, insert: Any, batch: list[Any], tenant_id: int) -> int:
    if not batch:
        return 0
    rows = b"[" + b",".join(line.rstrip(b"\n") for line in batch) + b"]"
    conn.execute(insert, {"tenant": tenant_id, "rows": rows.decode()})
    return len(batch)


def import_tenant(
    engine: Engine,
    app_engine: Engine,
    upload: Path,
    workdir: Path,
    *,
    name: str | None,
    slug: str | None,
    progress: Progress | None = None,
    placement: str = SHARED,
    placements: Placements | None = None,
) -> tuple[store.TenantRecord, store.KeyRecord, str]:
    """Verify the archive, create its tenant anew in `placement` (whose services' role
    `app_engine` is), load its rows there (the tenant goes on failure)."""
    placements = placements or Placements({})
    placements.check(placement)
    verified = open_archive(upload, workdir)
    if progress:
        progress("archive verified against its manifest")
    source = verified.manifest["tenant"]
    limits = {k: source.get(k) for k in ("max_in_flight", "statement_timeout_ms") if k in source}
    tenant, key, clear = store.create_tenant(
        engine,
        name=name or str(source.get("name", "")),
        slug=slug or source.get("slug"),
        rate_limit_per_second=source.get("rate_limit_per_second"),
        placement=placement,
        place=placements.parent_row_adder(placement),
        **limits,
    )
    try:
        load(app_engine, tenant.id, verified, progress)
    except BaseException as exc:
        parents = [engine] if placement == SHARED else [placements.engine(placement), engine]
        for each in parents:  # a dedicated placement's parent row, then the directory's
            with each.begin() as conn:
                conn.execute(text("DELETE FROM tenants WHERE id = :t"), {"t": tenant.id})
        if isinstance(exc, DBAPIError) and not exc.connection_invalidated:
            first = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
            raise BadArchive(f"rows refused by the database: {first}") from exc
        raise
    return tenant, key, clear
