"""`python -m migrations`: provision the roles, then apply every Alembic revision as the owner.

Safe to run any number of times, and by two jobs at once: advisory locks serialise them per
database; roles are created or corrected, Alembic skips what is applied. Every placement
(`shared` and each TENANT_DATABASES database) is brought to head in parallel, one process
each, after the roles of each PostgreSQL server (migrations/fanout.py); one line per
placement as it finishes. Exit status 1 when any failed, naming them all.
"""

from __future__ import annotations

import sys

from migrations.fanout import migrate_all
from migrations.settings import MigrateSettings


def main() -> None:
    settings = MigrateSettings.load()
    failed = [o.placement for o in migrate_all(settings) if o.error is not None]
    if failed:
        print(f"migrate: failed: {', '.join(failed)}", file=sys.stderr, flush=True)
        raise SystemExit(1)


if __name__ == "__main__":
    main()
