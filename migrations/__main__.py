"""`python -m migrations`: provision the restricted role, then apply every Alembic revision.

Safe to run any number of times: the role is created or updated, Alembic skips what is applied.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, pool, text

from migrations.settings import MigrateSettings

ROOT = Path(__file__).resolve().parent.parent


def ensure_app_role(settings: MigrateSettings) -> None:
    """Create (or re-secure) the login role the services use; never superuser, never BYPASSRLS."""
    role = settings.app_role
    password = settings.app_url().password
    engine = create_engine(settings.owner_url(), poolclass=pool.NullPool)
    with engine.begin() as conn:
        # Two migrate jobs may start together (compose replicas, CI): serialise on a lock.
        conn.execute(text("SELECT pg_advisory_xact_lock(7318006)"))
        exists = conn.execute(
            text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": role}
        ).first()
        verb = "ALTER" if exists else "CREATE"
        conn.execute(
            text(
                f'{verb} ROLE "{role}" LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE '
                "NOREPLICATION"
            )
        )
        if password is not None:
            quoted = conn.execute(
                text("SELECT quote_literal(:p)"), {"p": str(password)}
            ).scalar_one()
            conn.execute(text(f'ALTER ROLE "{role}" PASSWORD {quoted}'))
        database = conn.execute(text("SELECT current_database()")).scalar_one()
        conn.execute(text(f'GRANT CONNECT ON DATABASE "{database}" TO "{role}"'))
        conn.execute(text(f'GRANT USAGE ON SCHEMA public TO "{role}"'))
    engine.dispose()


def upgrade(settings: MigrateSettings) -> None:
    """Apply the schema up to the newest revision."""
    ensure_app_role(settings)
    config = Config(str(ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(ROOT / "migrations"))
    config.attributes["settings"] = settings
    command.upgrade(config, "head")


def main() -> None:
    settings = MigrateSettings.load()
    upgrade(settings)
    print("migrate: database is at the newest revision", flush=True)


if __name__ == "__main__":
    main()
