"""The lifecycle across placements (SPEC §11, docs/lifecycle.md "Placements").

A tenant's rows live in its placement's database; a move that died before its cleanup can
leave a copy in another. A purge therefore counts, deletes and verifies in every configured
placement (a placement without the tenant's rows costs one index probe per table), drops the
tenant's parent row in each dedicated one, and reads the WAL position of each database it
deleted from. Export and import work in one placement: the tenant's, or the one named.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, text

from gateway import archive, movedata, tenantdata
from gateway.placements import Placements
from gateway.store import TenantNotFound, TenantRecord, find_tenant
from gateway.tenantdata import Deletion, Progress
from services.tenancy.placements import SHARED

# A purge or export during a move would miss the rows on their way: the client retries.
MOVING = "a move of this tenant between placements is running; retry once it is done"
# Placement name -> table -> rows.
Counts = dict[str, dict[str, int]]


class MoveInProgress(Exception):
    """The tenant's rows are being moved between placements: purge and export wait (409)."""


class PlacementUnavailable(Exception):
    """The tenant's placement is not configured in this process (TENANT_DATABASES)."""


def move_running(conn: Connection, tenant_id: int) -> bool:
    """Whether a move of the tenant has begun and not finished (gateway role, shared)."""
    found = conn.execute(
        text("SELECT 1 FROM tenant_moves WHERE tenant_id = :t AND finished_at IS NULL"),
        {"t": tenant_id},
    ).first()
    return found is not None


def refuse_if_moving(directory: Engine, tenant_id: int) -> None:
    """MoveInProgress while a move of the tenant runs."""
    with directory.connect() as conn:
        if move_running(conn, tenant_id):
            raise MoveInProgress(tenant_id)


def engine_of(app_engines: Mapping[str, Engine], placement: str) -> Engine:
    """The services' role's engine in `placement`; PlacementUnavailable if not configured."""
    engine = app_engines.get(placement)
    if engine is None:
        raise PlacementUnavailable(placement)
    return engine


def export(
    directory: Engine,
    app_engines: Mapping[str, Engine],
    tenant: TenantRecord,
    revision: str | None,
    workdir: Path,
    progress: Progress | None = None,
) -> Path:
    """The tenant's archive, read from its placement; MoveInProgress during a move.

    A move that begins after the check copies while the export reads the source, which
    keeps every row until the flip; so the export stands unless the flip happened (the
    epoch changed) before it ended: then it is refused too, as the rows may be half gone.
    """
    refuse_if_moving(directory, tenant.id)
    engine = engine_of(app_engines, tenant.placement)
    path = archive.export(engine, tenant.to_json(), revision, workdir, progress)
    now = find_tenant(directory, tenant.id)
    if now is None:
        raise TenantNotFound(tenant.id)
    if (now.placement, now.placement_epoch) != (tenant.placement, tenant.placement_epoch):
        raise MoveInProgress(tenant.id)
    return path


def count_everywhere(app_engines: Mapping[str, Engine], tenant_id: int) -> Counts:
    """The tenant's rows per table in every placement (each from one snapshot)."""
    return {name: tenantdata.count_rows(e, tenant_id) for name, e in app_engines.items()}


def as_counts(stored: Mapping[str, Any]) -> Counts:
    """counts_before as stored; a purge begun before placements stored {table: n} (shared)."""
    if all(isinstance(v, int) for v in stored.values()):
        return {SHARED: {str(t): int(n) for t, n in stored.items()}}
    return {str(p): {str(t): int(n) for t, n in c.items()} for p, c in stored.items()}


def delete_everywhere(
    app_engines: Mapping[str, Engine], placement: str, tenant_id: int, progress: Progress | None
) -> Deletion:
    """Delete the tenant's rows in its placement (tenantdata's bounded batches), then any
    copy a move left elsewhere: a placement a tenant moved out of stays `frozen` for it,
    refusing its writes but the mover's, so those are cleared as the mover clears them."""
    shown = (lambda line: progress(f"{placement}: {line}")) if progress else None
    total = tenantdata.delete_rows(engine_of(app_engines, placement), tenant_id, shown)
    for name, engine in app_engines.items():
        if name != placement:
            total.rows += movedata.clear(
                engine, tenant_id, [t.name for t in movedata.data_tables(engine)]
            )
    return total


def drop_parent_rows(placements: Placements, tenant_id: int) -> dict[str, str]:
    """Delete the tenant's parent row in every dedicated placement (its id counters and move
    marks go with it, ON DELETE CASCADE); each one's WAL position right after."""
    positions: dict[str, str] = {}
    for name in placements.names:
        if name == SHARED:
            continue
        with placements.engine(name).begin() as conn:
            conn.execute(text("DELETE FROM tenants WHERE id = :t"), {"t": tenant_id})
            positions[name] = str(conn.execute(text("SELECT pg_current_wal_lsn()::text")).scalar())
    return positions


def certified(
    placement: str, before: Counts, after: Counts, lsn: Mapping[str, str]
) -> dict[str, Any]:
    """The certificate's placement fields: the tenant's placement's counts and WAL position
    at the top, and any other placement where rows of it were found under `other_placements`."""

    def tables(name: str) -> dict[str, dict[str, int]]:
        b, a = before.get(name, {}), after.get(name, {})
        return {t: {"before": b.get(t, 0), "after": a.get(t, 0)} for t in sorted(set(b) | set(a))}

    others = {
        name: {"tables": tables(name), "wal_lsn": lsn.get(name)}
        for name in sorted(before)
        if name != placement and any(before[name].values())
    }
    return {
        "placement": placement,
        "tables": tables(placement),
        "wal_lsn": lsn.get(placement),
        "other_placements": others,
    }
