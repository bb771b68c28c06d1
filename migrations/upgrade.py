"""The two steps of a migration run: the roles once per PostgreSQL server, then each database.

Each step holds an advisory lock in the database it connects to, so two migrate jobs at once
(compose replicas, CI) wait for each other there instead of racing; advisory locks are per
database, so the databases themselves proceed side by side.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, create_engine, pool, text
from sqlalchemy.engine import URL

from migrations.roles import become_owner, provision_database, provision_roles
from migrations.settings import MigrateSettings

ROOT = Path(__file__).resolve().parent.parent
# One key per step: the roles' lock is held in the first database of each server only.
_LOCK = 7318006
_ROLES_LOCK = 7318007


def server_of(url: URL) -> str:
    """`host:port` naming the PostgreSQL server (cluster) a URL reaches."""
    return f"{url.host or 'localhost'}:{url.port or 5432}"


def servers(settings: MigrateSettings) -> dict[str, list[str]]:
    """Placements grouped by the server they are on, in the order given (`shared` first)."""
    grouped: dict[str, list[str]] = {}
    for placement in settings.placements:
        grouped.setdefault(server_of(settings.bootstrap_url(placement)), []).append(placement)
    return grouped


def _locked(url: URL, key: int, work: Callable[[Connection], str]) -> str:
    """`work` on one connection to `url` while it holds advisory lock `key` there."""
    engine = create_engine(url, poolclass=pool.NullPool)
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": key})
            conn.commit()
            try:
                return work(conn)
            finally:
                conn.rollback()
                conn.execute(text("RESET ROLE"))
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                conn.commit()
    finally:
        engine.dispose()


def provision_server(settings: MigrateSettings, placement: str) -> None:
    """Create or correct the roles on `placement`'s server (cluster-wide catalog rows)."""

    def work(conn: Connection) -> str:
        with conn.begin():
            provision_roles(conn, settings)
        return ""

    _locked(settings.bootstrap_url(placement), _ROLES_LOCK, work)


def upgrade_database(settings: MigrateSettings, placement: str) -> str:
    """Grant the roles their rights on `placement`'s database, bring its schema to the newest
    revision as the owner; return that revision. Its server's roles must exist already."""

    def work(conn: Connection) -> str:
        with conn.begin():
            provision_database(conn, settings)
        with conn.begin():
            become_owner(conn, settings.owner_role)  # session-wide: all DDL below
        config = Config(str(ROOT / "alembic.ini"))
        config.set_main_option("script_location", str(ROOT / "migrations"))
        config.attributes["settings"] = settings
        config.attributes["connection"] = conn
        config.attributes["placement"] = placement
        command.upgrade(config, "head")
        return str(conn.execute(text("SELECT version_num FROM alembic_version")).scalar())

    return _locked(settings.bootstrap_url(placement), _LOCK, work)
