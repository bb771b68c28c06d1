"""The gateway's start-up check of its database role: never a superuser, the owner or more."""

from __future__ import annotations

import logging
import sys

from sqlalchemy.exc import SQLAlchemyError

from gateway.store import make_engine
from services.tenancy.audit import UnsafeDatabase, require_modest_role

EXIT_UNSAFE_DATABASE = 3
log = logging.getLogger("gateway")


def refuse_powerful_role(database_url: str, *, program: str, application_name: str) -> None:
    """Exit 3 with one line when the role is a superuser, the owner, CREATEROLE or BYPASSRLS.

    A database that cannot be reached is not a refusal: the gateway starts and answers 503
    until it is back (SPEC §5), and the check runs at its next start.
    """
    engine = make_engine(database_url, application_name=application_name)
    try:
        require_modest_role(engine)
    except UnsafeDatabase as exc:
        print(f"{program}: refusing to start: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(EXIT_UNSAFE_DATABASE) from None
    except SQLAlchemyError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
        log.warning("database role not checked (database unreachable): %s", first)
    finally:
        engine.dispose()
