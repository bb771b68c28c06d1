"""`python -m migrations`: provision the roles, then apply every Alembic revision as the owner.

Safe to run any number of times, and by two jobs at once: one connection holds an advisory
lock for the whole run; roles are created or corrected, Alembic skips what is applied.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, pool, text

from migrations.roles import RoleProvisioningError, become_owner, provision, stop
from migrations.settings import MigrateSettings

ROOT = Path(__file__).resolve().parent.parent
_LOCK = 7318006


def upgrade(settings: MigrateSettings) -> None:
    """Provision the roles and apply the schema up to the newest revision."""
    engine = create_engine(settings.owner_url(), poolclass=pool.NullPool)
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
                command.upgrade(config, "head")
            finally:
                conn.rollback()
                conn.execute(text("RESET ROLE"))
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _LOCK})
                conn.commit()
    finally:
        engine.dispose()


def main() -> None:
    settings = MigrateSettings.load()
    try:
        upgrade(settings)
    except RoleProvisioningError as exc:
        stop(str(exc))
    print("migrate: database is at the newest revision", flush=True)


if __name__ == "__main__":
    main()
