"""`python -m gateway`: read the settings (one-line error and exit 2 when malformed), serve."""

from __future__ import annotations

import logging
import sys

import uvicorn

from gateway.breaker import credentials_refused
from gateway.config import Settings
from gateway.dbaudit import refuse_powerful_role
from gateway.main import create_app
from services.tenancy.settings import EXIT_BAD_SETTING


def main() -> None:
    """Run the gateway with uvicorn on GATEWAY_HOST:GATEWAY_PORT."""
    settings = Settings.load()
    refused = credentials_refused(settings.REDIS_URL)
    if refused is not None:
        # Otherwise it would run "degraded" for ever, every Redis call failing alike.
        print(f"gateway: invalid setting REDIS_URL: Redis refused it: {refused}", file=sys.stderr)
        raise SystemExit(EXIT_BAD_SETTING)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    refuse_powerful_role(settings.database_url(), program="gateway", application_name="gateway")
    uvicorn.run(
        create_app(settings),
        host=settings.GATEWAY_HOST,
        port=settings.GATEWAY_PORT,
        # The gateway does not advertise its software; Date is kept.
        server_header=False,
        proxy_headers=False,
        log_level="info",
        # A log line per request cost ~4 % of the gateway's CPU (issue 10's profile); requests
        # are counted in /metrics, and the services run without an access log too.
        access_log=False,
        timeout_graceful_shutdown=5,
    )


if __name__ == "__main__":
    main()
