"""`python -m migrations`: provision the roles, then apply every Alembic revision as the owner.

Safe to run any number of times, and by two jobs at once: one connection holds an advisory
lock for the whole run; roles are created or corrected, Alembic skips what is applied.
Every placement (`shared`, then each TENANT_DATABASES database) is brought to head in turn,
one line each. In turn, not in parallel: Alembic's `op` and `context` are process-wide
proxies, and two role provisionings on one cluster would race on the same catalog rows.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, pool, text
from sqlalchemy.exc import OperationalError

from migrations.roles import RoleProvisioningError, become_owner, provision, stop
from migrations.settings import MigrateSettings
from services.tenancy.placements import SHARED

ROOT = Path(__file__).resolve().parent.parent
_LOCK = 7318006


def upgrade(settings: MigrateSettings, placement: str = SHARED) -> str:
    """Provision the roles, bring `placement`'s schema to the newest revision; return it."""
    engine = create_engine(settings.bootstrap_url(placement), poolclass=pool.NullPool)
    try:
        with engine.connect() as conn:
            # Two migrate jobs may start together (compose replicas, CI): serialise the run.
            conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": _LOCK})
            conn.commit()
            try:
                with conn.begin():
                    provision(conn, settings)
                with conn.begin():
                    become_owner(conn, settings.owner_role)  # session-wide: all DDL below
                config = Config(str(ROOT / "alembic.ini"))
                config.set_main_option("script_location", str(ROOT / "migrations"))
                config.attributes["settings"] = settings
                config.attributes["connection"] = conn
                config.attributes["placement"] = placement
                command.upgrade(config, "head")
                return str(conn.execute(text("SELECT version_num FROM alembic_version")).scalar())
            finally:
                conn.rollback()
                conn.execute(text("RESET ROLE"))
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _LOCK})
                conn.commit()
    finally:
        engine.dispose()


def main() -> None:
    settings = MigrateSettings.load()
    for placement in settings.placements:
        try:
            revision = upgrade(settings, placement)
        except RoleProvisioningError as exc:
            stop(str(exc) if placement == SHARED else f"placement {placement}: {exc}")
        except OperationalError as exc:
            if placement == SHARED:
                raise
            first = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
            stop(f"placement {placement}: cannot connect: {first}")
        where = "database" if placement == SHARED else f"placement {placement}"
        print(f"migrate: {where} is at the newest revision ({revision})", flush=True)


if __name__ == "__main__":
    main()
