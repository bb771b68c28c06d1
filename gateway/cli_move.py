"""`python -m gateway.cli tenants move ID --to NAME`: the same live move as the admin API,
run in the CLI's own process, progress on stderr, the final record on stdout.

The gateways learn of the cut-over from Redis (hold, release and the tenant's
invalidation on the usual channel), so REDIS_URL is required: without it they would not
hold the tenant's requests, and its writes in the cut-over would be refused (503).
"""

from __future__ import annotations

import argparse
import json
import sys

from redis import Redis
from sqlalchemy import Engine

from gateway import invalidation, movedata, mover, moverecord, store
from gateway.cli_lifecycle import CliRefusal, Publish
from gateway.config import CliSettings
from gateway.placements import Placements, UnknownPlacement


def add_parser(actions: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add `move` to `tenants`."""
    move = actions.add_parser("move", help="move a tenant's rows to another placement, live")
    move.add_argument("id", type=int)
    move.add_argument("--to", required=True, help="shared or a TENANT_DATABASES name")


def _progress(line: str) -> None:
    print(f"cli: {line}", file=sys.stderr, flush=True)


def run(args: argparse.Namespace, engine: Engine, settings: CliSettings, publish: Publish) -> None:
    """Move the tenant; exit 1 (CliRefusal) when the move cannot start or fails."""
    if not settings.REDIS_URL:
        raise CliRefusal("REDIS_URL is needed: the gateways hold the tenant through Redis")
    urls = settings.lifecycle_placement_urls()
    if not urls:
        raise CliRefusal("APP_DATABASE_URL (or DATABASE_URL) is needed to reach tenant tables")
    placements = Placements(settings.placement_urls())
    engines = mover.app_engines(urls)
    client = Redis.from_url(settings.REDIS_URL, socket_timeout=2, socket_connect_timeout=2)
    owner = moverecord.new_owner()
    try:
        try:
            source, move_id = moverecord.begin(engine, placements, args.id, args.to, owner=owner)
        except UnknownPlacement:
            known = ", ".join(placements.names)
            raise CliRefusal(f"unknown placement {args.to!r} (known: {known})") from None
        except (moverecord.MoveRunning, movedata.MoveError) as exc:
            reason = str(exc) if isinstance(exc, movedata.MoveError) else "a move of it runs"
            raise CliRefusal(f"tenant {args.id}: {reason}") from None

        flipped: list[store.TenantRecord] = []

        def invalidate(tenant: store.TenantRecord) -> None:
            # Once now, without publish_sync's 0.5 s repeat: that would lengthen the pause;
            # the full invalidation (with its repeat) follows the release below.
            keys, messages = invalidation.plan(tenant_id=tenant.id, slug=tenant.slug)
            pipe = client.pipeline(transaction=False)
            pipe.delete(*keys)
            for message in messages:
                pipe.publish(invalidation.CHANNEL, message)
            pipe.execute()
            flipped.append(tenant)

        def announce(message: str) -> None:
            client.publish(invalidation.CHANNEL, message)

        _progress(f"moving tenant {args.id} from {source} to {args.to}")
        result = mover.Move(
            directory=engine,
            app_engines=engines,
            placements=placements,
            signals=mover.Signals(
                hold=lambda t: announce(f"hold:{t}"),
                release=lambda t: announce(f"release:{t}"),
                invalidate=invalidate,
            ),
            tenant_id=args.id,
            source=source,
            target=args.to,
            move_id=move_id,
            owner=owner,
            heartbeat_timeout_seconds=settings.MOVE_HEARTBEAT_TIMEOUT_SECONDS,
            progress=_progress,
        ).run()
        for tenant in flipped:
            publish(*invalidation.plan(tenant_id=tenant.id, slug=tenant.slug))
    finally:
        client.close()
        placements.dispose()
        for each in engines.values():
            each.dispose()
    print(json.dumps(result, indent=2))
    if result["state"] != "done":
        raise CliRefusal(f"move failed, tenant {args.id} stays in {source}: {result['error']}")
