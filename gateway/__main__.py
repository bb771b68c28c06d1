"""`python -m gateway`: read the settings (one-line error and exit 2 when malformed), serve."""

from __future__ import annotations

import logging
import sys

import uvicorn

from gateway.breaker import credentials_refused
from gateway.config import Settings
from gateway.dbaudit import refuse_powerful_role
from gateway.listeners import bind
from gateway.main import create_app
from services.tenancy.settings import EXIT_BAD_SETTING


def main() -> None:
    """Serve on GATEWAY_HOST:GATEWAY_PORT, plus the internal listener when one is set."""
    settings = Settings.load()
    refused = credentials_refused(settings.REDIS_URL)
    if refused is not None:
        # Otherwise it would run "degraded" for ever, every Redis call failing alike.
        print(f"gateway: invalid setting REDIS_URL: Redis refused it: {refused}", file=sys.stderr)
        raise SystemExit(EXIT_BAD_SETTING)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    refuse_powerful_role(settings.database_url(), program="gateway", application_name="gateway")
    config = uvicorn.Config(
        create_app(settings),
        # The gateway does not advertise its software; Date is kept.
        server_header=False,
        proxy_headers=False,
        log_level="info",
        # A log line per request cost ~4 % of the gateway's CPU (issue 10's profile); requests
        # are counted in /metrics, and the services run without an access log too.
        access_log=False,
        timeout_graceful_shutdown=5,
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
