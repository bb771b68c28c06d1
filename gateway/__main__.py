"""`python -m gateway`: read the settings (one-line error and exit 2 when malformed), serve."""

from __future__ import annotations

import sys

import uvicorn

from gateway.breaker import credentials_refused
from gateway.config import Settings
from gateway.dbaudit import refuse_powerful_role
from gateway.listeners import bind
from gateway.main import create_app
from services.tenancy.coalesce import CoalescingHttpTools
from services.tenancy.logs import configure_logging
from services.tenancy.settings import EXIT_BAD_SETTING


def main() -> None:
    """Serve on GATEWAY_HOST:GATEWAY_PORT, plus the internal listener when one is set."""
    settings = Settings.load()
    refused = credentials_refused(settings.REDIS_URL)
    if refused is not None:
        # Otherwise it would run "degraded" for ever, every Redis call failing alike.
        print(f"gateway: invalid setting REDIS_URL: Redis refused it: {refused}", file=sys.stderr)
        raise SystemExit(EXIT_BAD_SETTING)
    log_config = configure_logging("gateway", settings.LOG_FORMAT)
    refuse_powerful_role(settings.database_url(), program="gateway", application_name="gateway")
    lifecycle_url = settings.lifecycle_database_url()
    if lifecycle_url:
        # Purge, export and import rely on RLS too: the same refusal for their role.
        refuse_powerful_role(lifecycle_url, program="gateway", application_name="gateway")
    config = uvicorn.Config(
        create_app(settings),
        # The gateway does not advertise its software; Date is kept.
        server_header=False,
        proxy_headers=False,
        log_level="info",
        log_config=log_config,
        # services.tenancy.accesslog writes the one line per request.
        access_log=False,
        timeout_graceful_shutdown=5,
        # One socket write per answer instead of two (services/tenancy/coalesce.py).
        http=CoalescingHttpTools,
    )
    listen = [(settings.GATEWAY_HOST, settings.GATEWAY_PORT)]
    if settings.GATEWAY_INTERNAL_PORT is not None:
        host = settings.GATEWAY_INTERNAL_HOST or settings.GATEWAY_HOST
        listen.append((host, settings.GATEWAY_INTERNAL_PORT))
    try:
        sockets = [bind(host, port) for host, port in listen]
    except OSError as exc:
        print(f"gateway: cannot listen: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(1) from None
    # One server over both sockets: one lifespan, one set of connections to Redis/PostgreSQL.
    uvicorn.Server(config).run(sockets=sockets)


if __name__ == "__main__":
    main()
