"""Every placement to head at once: the roles per server first, then one process per database.

A process per database (this one's own and up to MAX_CHILDREN more at once), not a thread:
Alembic's `op` and `context` are process-wide proxies, so two upgrades in one process would
write through each other's connection. The roles are cluster-wide catalog rows, so they are
done first, one server after another, in this process. A placement that fails (unreachable,
refused) is reported; the others still complete.
"""

from __future__ import annotations

import multiprocessing
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass

from sqlalchemy.exc import DBAPIError, OperationalError

from migrations.roles import RoleProvisioningError
from migrations.settings import MigrateSettings
from migrations.upgrade import provision_server, servers, upgrade_database

# Databases upgraded at once besides this process's own: each child is a Python with SQLAlchemy
# and Alembic loaded (about 70 MB), and the job runs under a memory limit (compose, k8s).
MAX_CHILDREN = 3
_START_METHOD = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"


@dataclass(frozen=True, slots=True)
class Outcome:
    """One placement's result: the revision it is at, or why it is not."""

    placement: str
    revision: str | None
    error: str | None
    seconds: float

    def line(self) -> str:
        if self.error is not None:
            return f"migrate: placement {self.placement}: {self.error}"
        return f"migrate: placement {self.placement}: at {self.revision} ({self.seconds:.1f} s)"


def _reason(exc: BaseException) -> str:
    """One line saying why a placement failed."""
    if isinstance(exc, RoleProvisioningError):
        return str(exc)
    if isinstance(exc, DBAPIError) and exc.orig is not None:
        first = (str(exc.orig).strip().splitlines() or [""])[0]
        # psycopg2 gives no SQLSTATE when it could not reach or log in to the server.
        if isinstance(exc, OperationalError) and getattr(exc.orig, "pgcode", None) is None:
            return f"cannot connect: {first}"
        return f"failed: {first}"
    first = (str(exc).strip().splitlines() or [""])[0]
    return f"failed: {type(exc).__name__}: {first}"


def _report(outcome: Outcome) -> Outcome:
    print(outcome.line(), file=sys.stderr if outcome.error else sys.stdout, flush=True)
    return outcome


def upgrade_one(placement: str, settings: MigrateSettings | None = None) -> Outcome:
    """Bring one database to head and say how it went (a child process's whole job)."""
    settings = settings or MigrateSettings.load()
    started = time.monotonic()
    try:
        revision = upgrade_database(settings, placement)
    except Exception as exc:  # reported per placement; the others go on
        return Outcome(placement, None, _reason(exc), time.monotonic() - started)
    return Outcome(placement, revision, None, time.monotonic() - started)


def migrate_all(settings: MigrateSettings) -> list[Outcome]:
    """Every placement's outcome, each printed as it finishes."""
    outcomes: list[Outcome] = []
    ready: list[str] = []
    for placements in servers(settings).values():
        started = time.monotonic()
        try:
            provision_server(settings, placements[0])
        except Exception as exc:  # the whole server is out: each of its databases says so
            reason, spent = _reason(exc), time.monotonic() - started
            outcomes.extend(_report(Outcome(p, None, reason, spent)) for p in placements)
            continue
        ready.extend(placements)
    if len(ready) <= 1:  # one database (no TENANT_DATABASES): no child process to start
        outcomes.extend(_report(upgrade_one(p, settings)) for p in ready)
        return outcomes
    # This process takes the first database itself; each other one gets a child, MAX_CHILDREN
    # at a time. Forked, not spawned: a spawned child imports SQLAlchemy and Alembic again,
    # which made a run 3-5 times slower than one process taking the databases in turn; a
    # fork shares them. Safe here: no connection is open (NullPool, disposed) and no thread
    # runs yet (the executor forks its workers before it starts its own thread).
    first, rest = ready[0], ready[1:]
    context = multiprocessing.get_context(_START_METHOD)
    with ProcessPoolExecutor(max_workers=min(len(rest), MAX_CHILDREN), mp_context=context) as pool:
        futures = {pool.submit(upgrade_one, placement): placement for placement in rest}
        outcomes.append(_report(upgrade_one(first, settings)))
        for future in as_completed(futures):
            try:
                outcome = future.result()
            except BrokenProcessPool:
                outcome = Outcome(futures[future], None, "failed: its process died", 0.0)
            outcomes.append(_report(outcome))
    return outcomes
