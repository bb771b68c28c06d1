"""`python -m gateway`: read the settings (one-line error and exit 2 when malformed), serve."""

from __future__ import annotations

import sys

import uvicorn

from gateway.breaker import credentials_refused
from gateway.config import Settings
from gateway.dbaudit import refuse_powerful_role
from gateway.main import create_app
from services.tenancy.logs import configure_logging
from services.tenancy.settings import EXIT_BAD_SETTING


def main() -> None:
    """Run the gateway with uvicorn on GATEWAY_HOST:GATEWAY_PORT."""
    settings = Settings.load()
    refused = credentials_refused(settings.REDIS_URL)
    if refused is not None:
        # Otherwise it would run "degraded" for ever, every Redis call failing alike.
        print(f"gateway: invalid setting REDIS_URL: Redis refused it: {refused}", file=sys.stderr)
        raise SystemExit(EXIT_BAD_SETTING)
    log_config = configure_logging("gateway", settings.LOG_FORMAT)
    refuse_powerful_role(settings.database_url(), program="gateway", application_name="gateway")
    uvicorn.run(
        create_app(settings),
        host=settings.GATEWAY_HOST,
        port=settings.GATEWAY_PORT,
        # The gateway does not advertise its software; Date is kept.
        server_header=False,
        proxy_headers=False,
        log_level="info",
        log_config=log_config,
        # services.tenancy.accesslog writes the one line per request.
        access_log=False,
        timeout_graceful_shutdown=5,
    )


if __name__ == "__main__":
    main()
