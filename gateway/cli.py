"""`python -m gateway.cli`: the admin API's operations for operators, straight on PostgreSQL.

Changes are published on the same Redis channel as the admin API's, so every running
gateway sees them within a second.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError
from redis import Redis
from redis.exceptions import RedisError
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from gateway import archive, cli_lifecycle, cli_move, invalidation, lifecycle, store, usage
from gateway.config import CliSettings
from gateway.dbaudit import refuse_powerful_role
from gateway.placements import Placements, UnknownPlacement
from gateway.schemas import KeyCreated, TenantCreate, TenantOut, TenantPatch
from services.tenancy.settings import EXIT_BAD_SETTING, setting_error_line


def _print(data: Any) -> None:
    print(json.dumps(data, indent=2, default=str))


def _publish(settings: CliSettings, keys: list[str], messages: list[str]) -> None:
    if not settings.REDIS_URL:
        print(
            "cli: REDIS_URL is not set: running gateways see this within the cache TTL",
            file=sys.stderr,
        )
        return
    client = Redis.from_url(settings.REDIS_URL, socket_timeout=2, socket_connect_timeout=2)
    try:
        invalidation.publish_sync(client, keys, messages)
    except RedisError as exc:
        print(
            f"cli: could not reach Redis ({exc}): gateways see this within the cache TTL",
            file=sys.stderr,
        )
    finally:
        client.close()


def _tenants(args: argparse.Namespace, engine: Engine, settings: CliSettings) -> None:
    if args.action == "create":
        body = TenantCreate(
            name=args.name,
            slug=args.slug,
            rate_limit_per_second=args.rate_limit,
            max_in_flight=args.max_in_flight,
            statement_timeout_ms=args.statement_timeout_ms,
            placement=args.placement,
        )
        placements = Placements(settings.placement_urls())
        try:
            place = placements.parent_row_adder(body.placement)
            tenant, key, clear = store.create_tenant(engine, **body.model_dump(), place=place)
        except UnknownPlacement:
            known = ", ".join(placements.names)
            raise cli_lifecycle.CliRefusal(
                f"unknown placement {body.placement!r} (known: {known})"
            ) from None
        finally:
            placements.dispose()
        _publish(settings, *invalidation.plan(tenant_id=tenant.id, slug=tenant.slug))
        _print(
            {**TenantOut.of(tenant).model_dump(mode="json"), "api_key": clear, "api_key_id": key.id}
        )
    elif args.action == "list":
        _print([TenantOut.of(t).model_dump(mode="json") for t in store.list_tenants(engine)])
    elif args.action == "update":
        patch = TenantPatch.model_validate(
            {field: getattr(args, field) for field in _LIMITS if getattr(args, field) is not _UNSET}
        )
        tenant = store.update_tenant(engine, args.id, patch.changes())
        _publish(settings, *invalidation.plan(tenant_id=tenant.id))
        _print(TenantOut.of(tenant).model_dump(mode="json"))
    elif args.action in ("suspend", "activate"):
        status = "suspended" if args.action == "suspend" else "active"
        tenant = store.update_tenant(engine, args.id, {"status": status})
        _publish(settings, *invalidation.plan(tenant_id=tenant.id))
        _print(TenantOut.of(tenant).model_dump(mode="json"))
    elif args.action == "usage":
        _usage(args, engine, settings)
    elif args.action == "move":
        cli_move.run(args, engine, settings, lambda k, m: _publish(settings, k, m))
    elif args.action in cli_lifecycle.VERBS:
        cli_lifecycle.run(args, engine, settings, lambda k, m: _publish(settings, k, m))


def _usage(args: argparse.Namespace, engine: Engine, settings: CliSettings) -> None:
    store.get_tenant(engine, args.id)  # "no such tenant" rather than an answer of zeros
    if not settings.REDIS_URL:
        raise UsageUnavailable("REDIS_URL is not set: usage lives in Redis")
    window = args.window_seconds
    if not usage.BUCKET_SECONDS <= window <= usage.MAX_WINDOW_SECONDS:
        raise UsageUnavailable(
            f"--window-seconds must be {usage.BUCKET_SECONDS}..{usage.MAX_WINDOW_SECONDS}"
        )
    keys = usage.usage_keys(args.id, window_seconds=window, now=time.time())
    client = Redis.from_url(
        settings.REDIS_URL, socket_timeout=2, socket_connect_timeout=2, decode_responses=True
    )
    try:
        with client.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.hgetall(key)
            hashes = pipe.execute()
    except RedisError as exc:
        raise UsageUnavailable(f"could not reach Redis ({exc})") from exc
    finally:
        client.close()
    _print(usage.summarise(hashes, window_seconds=window))


class UsageUnavailable(Exception):
    """The usage store cannot answer."""


def _keys(args: argparse.Namespace, engine: Engine, settings: CliSettings) -> None:
    if args.action == "create":
        key, clear = store.create_key(engine, args.tenant_id)
        _print(KeyCreated.of(key, clear).model_dump(mode="json"))
    elif args.action == "revoke":
        digest = store.revoke_key(engine, args.tenant_id, args.key_id)
        _publish(settings, *invalidation.plan(tenant_id=args.tenant_id, key_digests=[digest]))
        print(f"revoked key {args.key_id} of tenant {args.tenant_id}")


_UNSET = object()
# Limits `tenants update` can set; `default` stores null (the deployment's default).
_LIMITS = {
    "rate_limit_per_second": ("--rate-limit", "requests per second (0: no limit)"),
    "max_in_flight": ("--max-in-flight", "requests in flight at once (0: no cap)"),
    "statement_timeout_ms": ("--statement-timeout-ms", "the services' per-statement limit"),
}


def _limit(value: str) -> int | None:
    if value == "default":
        return None
    try:
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError("an integer, or `default`") from None


def parser() -> argparse.ArgumentParser:
    """The command line."""
    top = argparse.ArgumentParser(prog="python -m gateway.cli", description=__doc__)
    groups = top.add_subparsers(dest="group", required=True)

    tenants = groups.add_parser(
        "tenants",
        help="create, list, update, suspend, activate, delete, restore, purge, export, import, "
        "move, usage",
    )
    t = tenants.add_subparsers(dest="action", required=True)
    create = t.add_parser("create", help="create a tenant and print its first API key")
    create.add_argument("name")
    create.add_argument("--slug")
    create.add_argument("--rate-limit", type=int, help="requests per second (0: no limit)")
    create.add_argument("--max-in-flight", type=int, help="requests in flight at once (0: no cap)")
    create.add_argument("--statement-timeout-ms", type=int, help="the services' statement limit")
    create.add_argument("--placement", default="shared", help="shared or a TENANT_DATABASES name")
    t.add_parser("list", help="list tenants")
    update = t.add_parser("update", help="change a tenant's limits (`default`: back to default)")
    update.add_argument("id", type=int)
    for field, (flag, text) in _LIMITS.items():
        update.add_argument(flag, dest=field, type=_limit, default=_UNSET, help=text)
    for action in ("suspend", "activate"):
        t.add_parser(action, help=f"{action} a tenant").add_argument("id", type=int)
    cli_lifecycle.add_parsers(t)
    cli_move.add_parser(t)
    used = t.add_parser("usage", help="requests, errors, p95, database time, rows, bytes")
    used.add_argument("id", type=int)
    used.add_argument("--window-seconds", type=int, default=3600)

    keys = groups.add_parser("keys", help="create or revoke API keys")
    k = keys.add_subparsers(dest="action", required=True)
    k.add_parser("create", help="a new key for a tenant").add_argument("tenant_id", type=int)
    revoke = k.add_parser("revoke", help="revoke a key")
    revoke.add_argument("tenant_id", type=int)
    revoke.add_argument("key_id", type=int)
    return top


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; exit status 0 on success, 1 on a refused change, 2 on bad usage."""
    args = parser().parse_args(argv)
    try:
        settings = CliSettings()  # type: ignore[call-arg]
    except ValidationError as exc:
        print(setting_error_line("cli", exc), file=sys.stderr)
        return EXIT_BAD_SETTING
    refuse_powerful_role(settings.database_url(), program="cli", application_name="gateway-cli")
    engine = store.make_engine(settings.database_url(), application_name="gateway-cli")
    try:
        (_tenants if args.group == "tenants" else _keys)(args, engine, settings)
    except ValidationError as exc:
        print(f"cli: {exc.errors()[0]['loc'][0]}: {exc.errors()[0]['msg']}", file=sys.stderr)
        return 2
    except (store.TenantNotFound, store.KeyNotFound) as exc:
        what = "key" if isinstance(exc, store.KeyNotFound) else "tenant"
        print(f"cli: no such {what}: {exc}", file=sys.stderr)
        return 1
    except (
        store.DuplicateTenant,
        archive.BadArchive,
        cli_lifecycle.CliRefusal,
        lifecycle.PurgeRunning,
        lifecycle.PurgeIncomplete,
        UsageUnavailable,
    ) as exc:
        print(f"cli: {exc}", file=sys.stderr)
        return 1
    except store.TenantPendingDeletion as exc:
        print(f"cli: tenant {exc} is pending deletion: restore it first", file=sys.stderr)
        return 1
    except lifecycle.NotPendingDeletion as exc:
        print(f"cli: tenant {exc} is not pending deletion (or its purge began)", file=sys.stderr)
        return 1
    except SQLAlchemyError as exc:
        print(
            f"cli: database error: {exc.__class__.__name__}: {str(exc).splitlines()[0]}",
            file=sys.stderr,
        )
        # A connection lost around COMMIT leaves the outcome unknown: invalidate anyway.
        changed = getattr(args, "id", None) or getattr(args, "tenant_id", None)
        if args.action not in ("create", "list") and changed:
            _publish(settings, *invalidation.plan(tenant_id=changed))
        return 1
    finally:
        engine.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
