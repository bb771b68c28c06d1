"""The stack the bench measures: started here, in a temporary folder, or one already running."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import make_url

from bench.settings import BenchSettings
from kit.procs import run_migrations, start_service
from kit.servers import PgServer, RedisServer
from services.tenancy.dburl import derive_app_url, plain

DEDICATED = "dedicated"


@dataclass(frozen=True, slots=True)
class HttpStack:
    """What the HTTP comparison needs to know about a stack."""

    gateway_url: str
    users_url: str
    admin_token: str
    signing_secret: str
    # The same gateway and users service with METRICS_PER_TENANT=false (own stack only).
    plain_gateway_url: str | None = None
    # The gateway's process (own stack only): its CPU time per request is its own work.
    gateway_pid: int | None = None
    # A placement beside `shared` in another database of the same server (own stack only).
    dedicated: str | None = None


@contextmanager
def postgres(workdir: Path) -> Iterator[PgServer]:
    """A PostgreSQL server of the bench's own (system binaries, else embedded)."""
    server = PgServer(workdir / "postgres", for_tests=True)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def migrated_database(server: PgServer, *, name: str, log_dir: Path) -> str:
    """CREATE DATABASE + migrations; the owner's plain URL."""
    url = server.create_database(name)
    run_migrations(database_url=url, log_path=log_dir / f"migrate-{name}.log")
    return url


@contextmanager
def http_stack(settings: BenchSettings, *, server: PgServer, workdir: Path) -> Iterator[HttpStack]:
    """The running stack named by the settings, else Redis, users service and gateway here."""
    if settings.attached:
        assert settings.BENCH_USERS_URL and settings.ADMIN_TOKEN
        assert settings.BENCH_GATEWAY_URL and settings.INTERNAL_SIGNING_SECRET
        yield HttpStack(
            gateway_url=settings.BENCH_GATEWAY_URL.rstrip("/"),
            users_url=settings.BENCH_USERS_URL.rstrip("/"),
            admin_token=settings.ADMIN_TOKEN,
            signing_secret=settings.INTERNAL_SIGNING_SECRET,
        )
        return
    logs = workdir / "logs"
    admin_token, signing_secret = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    url = server.create_database("tenantkit_bench_http")
    # A second database as the `dedicated` placement, on the same server: what a placement
    # costs the request path is then measured apart from a second server's own speed.
    dedicated = server.create_database(f"tenantkit_bench_http_{DEDICATED}")
    where = make_url(dedicated)
    placed = {
        "TENANT_DATABASES": f"{DEDICATED}=postgresql://{where.host}:{where.port}/{where.database}"
    }
    run_migrations(database_url=url, log_path=logs / "migrate-http.log", role_urls=placed)
    with ExitStack() as stop:
        redis = RedisServer(workdir / "redis")
        redis.start()
        stop.callback(redis.stop)

        def pair(metrics: str) -> tuple[str, str, int]:
            users = start_service(
                "users",
                env={
                    "APP_DATABASE_URL": plain(derive_app_url(url)),
                    "INTERNAL_SIGNING_SECRET": signing_secret,
                    "METRICS_PER_TENANT": metrics,
                    # Replay protection as deployed: one SET NX per request in Redis.
                    "REDIS_URL": redis.services_url,
                    **placed,
                },
                log_dir=logs,
            )
            stop.callback(users.stop)
            gateway = start_service(
                "gateway",
                env={
                    "DATABASE_URL": url,
                    "REDIS_URL": redis.url,
                    "USERS_URL": users.url,
                    "ADMIN_TOKEN": admin_token,
                    "INTERNAL_SIGNING_SECRET": signing_secret,
                    "GATEWAY_AUTH_MODES": "api_key",
                    "METRICS_PER_TENANT": metrics,
                    **placed,
                },
                log_dir=logs,
            )
            stop.callback(gateway.stop)
            return gateway.url, users.url, gateway.pid

        gateway_url, users_url, gateway_pid = pair("true")
        plain_gateway_url, _, _ = pair("false")
        yield HttpStack(
            gateway_url=gateway_url,
            users_url=users_url,
            admin_token=admin_token,
            signing_secret=signing_secret,
            plain_gateway_url=plain_gateway_url,
            gateway_pid=gateway_pid,
            dedicated=DEDICATED,
        )
