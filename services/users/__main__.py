"""`python -m services.users`: check settings and database, then serve."""

from __future__ import annotations

import logging
import sys

import uvicorn

from services.tenancy.audit import UnsafeDatabase, require_isolation
from services.tenancy.runtime import create_tenant_engine
from services.users.config import SERVICE_NAME, Settings
from services.users.main import create_app

EXIT_UNSAFE_DATABASE = 3
EXIT_NO_DATABASE = 4


def _refuse(reason: str, code: int) -> None:
    print(f"{SERVICE_NAME}: refusing to start: {reason}", file=sys.stderr, flush=True)
    raise SystemExit(code)


def _audit(settings: Settings) -> None:
    # Audited here too (the lifespan audits again) so that a refusal is one clean line
    # instead of a server's start-up traceback.
    engine = create_tenant_engine(settings.database_url(), application_name=SERVICE_NAME)
    try:
        require_isolation(engine)
    except UnsafeDatabase as exc:
        _refuse(str(exc), EXIT_UNSAFE_DATABASE)
    except Exception as exc:  # noqa: BLE001 - any failure to connect ends the start the same way
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        _refuse(f"cannot audit the database: {first}", EXIT_NO_DATABASE)
    finally:
        engine.dispose()


def main() -> None:
    settings = Settings.load()
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s"
    )
    _audit(settings)
    uvicorn.run(
        create_app(settings),
        host=settings.USERS_HOST,
        port=settings.USERS_PORT,
        log_level="info",
        access_log=False,
    )


if __name__ == "__main__":
    main()
