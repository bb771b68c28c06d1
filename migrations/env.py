"""Alembic environment: the bootstrap connection comes from DATABASE_URL, never from alembic.ini.

DDL runs as the owner role (SPEC §7), whichever user DATABASE_URL names.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, pool

from migrations.roles import become_owner
from migrations.settings import MigrateSettings

config = context.config
settings: MigrateSettings = config.attributes.get("settings") or MigrateSettings.load()
config.attributes["app_role"] = settings.app_role
config.attributes["gateway_role"] = settings.gateway_role
config.attributes["owner_role"] = settings.owner_role


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        context.configure(connection=connection, transaction_per_migration=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = create_engine(settings.owner_url(), poolclass=pool.NullPool)
    with engine.connect() as conn:
        with conn.begin():
            become_owner(conn, settings.owner_role)
        context.configure(connection=conn, transaction_per_migration=True)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    raise SystemExit("migrate: offline (--sql) mode is not supported; run against DATABASE_URL")
run_migrations_online()
