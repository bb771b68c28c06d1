"""What a run measures: a gateway routing two placements, `shared` and `dedicated`.

`python -m bench.movelive` starts one on a PostgreSQL server of its own (`placed_stack`);
the suite builds a `Target` from its own placed stack (tests/e2e/placed_stack.py).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import make_url

from kit.procs import run_migrations, start_service
from kit.servers import PgServer, RedisServer
from kit.stacks import Database, Secrets, gateway_env, new_database, users_env
from services.tenancy.dburl import plain

DEDICATED = "dedicated"


@dataclass(frozen=True, slots=True)
class Target:
    """The stack under measurement: its gateway, and both placements' superuser URLs."""

    gateway_url: str
    admin_token: str
    shared: Database
    dedicated_url: str  # the superuser's: the checks look at every tenant's rows

    def url_of(self, placement: str) -> str:
        return self.shared.url if placement == "shared" else self.dedicated_url

    def app_url_of(self, placement: str) -> str:
        """The services' role in `placement` (same user and password in every placement)."""
        where = make_url(self.url_of(placement))
        return plain(make_url(self.shared.app_url).set(database=where.database))


@contextmanager
def placed_stack(server: PgServer, workdir: Path) -> Iterator[Target]:
    """Shared and dedicated databases migrated as placements, Redis, users and gateway."""
    logs = workdir / "logs"
    shared = new_database(server, log_dir=logs, name="tenantkit_move")
    dedicated_url = server.create_database(f"tenantkit_move_{DEDICATED}")
    where = make_url(dedicated_url)
    # Where the placement is, without credentials: each process brings its own role.
    placed = {
        "TENANT_DATABASES": f"{DEDICATED}=postgresql://{where.host}:{where.port}/{where.database}"
    }
    run_migrations(database_url=shared.url, log_path=logs / "migrate.log", role_urls=placed)
    keys = Secrets(*(secrets.token_urlsafe(32) for _ in range(3)))
    redis = RedisServer(workdir / "redis")
    redis.start()
    users = start_service(
        "users",
        env={**users_env(shared, keys, redis_url=redis.services_url), **placed},
        log_dir=logs,
    )
    env = gateway_env(database=shared, redis_url=redis.url, users_url=users.url, secrets=keys)
    gateway = start_service("gateway", env={**env, **placed}, log_dir=logs)
    try:
        yield Target(gateway.url, keys.admin_token, shared, dedicated_url)
    finally:
        gateway.stop()
        users.stop()
        redis.stop()
