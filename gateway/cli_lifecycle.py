"""The CLI's lifecycle verbs: delete (--purge), restore, purge, export, import.

Long work prints progress lines on stderr; stdout carries only the result (JSON).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import Engine, text

from gateway import archive, invalidation, lifecycle, mover, placedlife, purger, store
from gateway.config import CliSettings
from gateway.placements import Placements, UnknownPlacement
from gateway.schemas import TenantOut
from services.tenancy.placements import SHARED

Publish = Callable[[list[str], list[str]], None]
VERBS = ("delete", "restore", "purge", "export", "import")


class CliRefusal(Exception):
    """A lifecycle command that cannot go on: the one line to print (exit 1)."""


def add_parsers(actions: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the lifecycle verbs to `tenants`."""
    delete = actions.add_parser("delete", help="refuse a tenant now, purge after the grace")
    delete.add_argument("id", type=int)
    delete.add_argument("--purge", action="store_true", help="purge now, no grace period")
    actions.add_parser("restore", help="bring a pending deletion back").add_argument("id", type=int)
    actions.add_parser("purge", help="purge a tenant now").add_argument("id", type=int)
    export = actions.add_parser("export", help="write a tenant's data as a gzip tar")
    export.add_argument("id", type=int)
    export.add_argument("-o", "--output", required=True, type=Path)
    load = actions.add_parser("import", help="create a tenant from an exported archive")
    load.add_argument("file", type=Path)
    load.add_argument("--name")
    load.add_argument("--slug")
    load.add_argument("--placement", default=SHARED, help="where its rows go (default shared)")


def _progress(line: str) -> None:
    print(f"cli: {line}", file=sys.stderr, flush=True)


def _life(engine: Engine, settings: CliSettings) -> purger.Lifecycle:
    url = settings.lifecycle_database_url()
    if url is None:
        raise CliRefusal("APP_DATABASE_URL (or DATABASE_URL) is needed to reach tenant tables")
    return purger.Lifecycle(
        engine=engine,
        app_engines=mover.app_engines(settings.lifecycle_placement_urls()),
        key=settings.certificate_key() or b"",
        grace_seconds=settings.TENANT_DELETION_GRACE_SECONDS,
        placements=Placements(settings.placement_urls()),
    )


def _dispose(life: purger.Lifecycle) -> None:
    life.placements.dispose()
    for each in life.app_engines.values():
        each.dispose()


def run(args: argparse.Namespace, engine: Engine, settings: CliSettings, publish: Publish) -> None:
    """Run one lifecycle verb."""
    if args.action == "restore":
        tenant = lifecycle.restore(engine, args.id)
        publish(*invalidation.plan(tenant_id=tenant.id, slug=tenant.slug))
        print(json.dumps(TenantOut.of(tenant).model_dump(mode="json"), indent=2))
        return
    if args.action in ("delete", "purge"):
        publish(*purger.refusal_plan(lifecycle.request_deletion(engine, args.id)))
        if args.action == "delete" and not args.purge:
            print(f"tenant {args.id} is pending deletion (restorable until it is purged)")
            return
        if settings.certificate_key() is None:
            raise CliRefusal("DELETION_CERTIFICATE_SECRET (or ADMIN_TOKEN) is needed to sign")
        life = _life(engine, settings)
        try:
            cert, deleted = lifecycle.purge(
                engine, life.app_engines, args.id, life.key, _progress, life.placements
            )
        except placedlife.MoveInProgress:
            raise CliRefusal(f"tenant {args.id}: {placedlife.MOVING}") from None
        finally:
            _dispose(life)
        publish(*purger.redis_plan(deleted))
        time.sleep(purger.LATE_USAGE_SECONDS)
        publish(*purger.late_usage_plan(deleted))
        print(json.dumps(cert, indent=2))
        return
    life = _life(engine, settings)
    workdir = Path(tempfile.mkdtemp(prefix="tk-cli-"))
    try:
        if args.action == "export":
            tenant = store.get_tenant(engine, args.id)
            with engine.connect() as conn:
                revision = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
            path = placedlife.export(engine, life.app_engines, tenant, revision, workdir, _progress)
            shutil.move(path, args.output)
            print(f"tenant {args.id} exported to {args.output}")
        else:
            try:
                life.placements.check(args.placement)
            except UnknownPlacement:
                known = ", ".join(life.placements.names)
                raise CliRefusal(f"unknown placement {args.placement!r} (known: {known})") from None
            tenant, key, clear = archive.import_tenant(
                engine,
                life.require_app_engine(args.placement),
                args.file,
                workdir,
                name=args.name,
                slug=args.slug,
                progress=_progress,
                placement=args.placement,
                placements=life.placements,
            )
            publish(*invalidation.plan(tenant_id=tenant.id, slug=tenant.slug))
            body = TenantOut.of(tenant).model_dump(mode="json")
            print(json.dumps({**body, "api_key": clear, "api_key_id": key.id}, indent=2))
    except placedlife.MoveInProgress:
        raise CliRefusal(f"tenant {args.id}: {placedlife.MOVING}") from None
    except placedlife.PlacementUnavailable as exc:
        raise CliRefusal(f"placement {exc} is not in TENANT_DATABASES here") from None
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        _dispose(life)
