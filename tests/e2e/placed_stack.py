"""A stack with two placements: `shared` and `dedicated`, each a database of its own."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg2
from sqlalchemy.engine import make_url

from kit.procs import ServiceProcess, run_migrations, start_service
from kit.servers import PgServer, RedisServer
from kit.stacks import Database, Secrets, gateway_env, new_database, users_env
from services.tenancy.dburl import plain

DEDICATED = "dedicated"


@dataclass
class PlacedStack:
    shared: Database
    # The dedicated placement's superuser URL (tests look inside with it).
    dedicated_url: str
    # TENANT_DATABASES as every process of the stack gets it.
    tenant_databases: str
    users: ServiceProcess
    gateway: ServiceProcess
    secrets: Secrets
    # The gateway user's Redis URL (an operator's CLI publishes with it).
    redis_url: str
    logs: Path

    def admin_client(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.gateway.url,
            headers={"Authorization": f"Bearer {self.secrets.admin_token}"},
            timeout=10,
        )

    def url_of(self, placement: str) -> str:
        return self.shared.url if placement == "shared" else self.dedicated_url

    def app_url_of(self, placement: str) -> str:
        """The services' role's URL in `placement`."""
        return self._as(self.shared.app_url, placement)

    def gateway_url_of(self, placement: str) -> str:
        """The gateway role's URL in `placement`."""
        return self._as(self.shared.gateway_url, placement)

    def _as(self, role_url: str, placement: str) -> str:
        where = make_url(self.url_of(placement))
        return plain(make_url(role_url).set(database=where.database))


def placement_url(server: PgServer, dbname: str) -> str:
    """Where a placement is, without credentials: each process brings its own role."""
    return f"postgresql://127.0.0.1:{server.port}/{dbname}"


@contextmanager
def placed_stack(
    server: PgServer,
    secrets: Secrets,
    workdir: Path,
    *,
    label: str,
    gateway_settings: dict[str, str] | None = None,
) -> Iterator[PlacedStack]:
    """A fresh shared database, a dedicated one migrated as a placement, Redis and services
    (the gateway with `gateway_settings` on top of the stack's)."""
    logs = workdir / "logs"
    shared = new_database(server, log_dir=logs)
    dedicated_name = f"{shared.name}_{DEDICATED}"
    dedicated_url = server.create_database(dedicated_name)
    tenant_databases = f"{DEDICATED}={placement_url(server, dedicated_name)}"
    run_migrations(
        database_url=shared.url,
        log_path=logs / f"migrate-{dedicated_name}.log",
        role_urls={"TENANT_DATABASES": tenant_databases},
    )
    # Its own Redis: tenant ids restart at 1 in a fresh database.
    redis = RedisServer(workdir / f"redis-{label}")
    redis.start()
    placed = {"TENANT_DATABASES": tenant_databases}
    users = start_service(
        "users",
        env={**users_env(shared, secrets, redis_url=redis.services_url), **placed},
        log_dir=logs,
    )
    gw_env = gateway_env(database=shared, redis_url=redis.url, users_url=users.url, secrets=secrets)
    gateway = start_service(
        "gateway", env={**gw_env, **placed, **(gateway_settings or {})}, log_dir=logs
    )
    try:
        yield PlacedStack(
            shared=shared,
            dedicated_url=dedicated_url,
            tenant_databases=tenant_databases,
            users=users,
            gateway=gateway,
            secrets=secrets,
            redis_url=redis.url,
            logs=logs,
        )
    finally:
        gateway.stop()
        users.stop()
        redis.stop()


def rows(url: str, sql: str, *args: object) -> list[tuple[object, ...]]:
    """`sql`'s rows on `url` (a plain postgresql:// URL), in one transaction."""
    conn = psycopg2.connect(url)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(sql, args)
            return list(cur.fetchall()) if cur.description is not None else []
    finally:
        conn.close()
