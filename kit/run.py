"""`make run`: the whole stack natively, in the foreground, stopped cleanly by Ctrl-C/SIGTERM."""

from __future__ import annotations

import os
import shlex
import signal
import sys
import time
from collections.abc import Mapping
from types import FrameType

from sqlalchemy.engine import make_url

from kit.children import Child, die_with_parent, stop_all, stop_together
from kit.datadir import REDIS_PASSWORDS, DataDir
from kit.follow import LogFollower
from kit.procs import ProcessError, run_migrations, service_log_path, start_service
from kit.redisacl import RedisPasswords
from kit.runconfig import ConfigError, RunConfig, read_config
from kit.servers import PgServer, RedisServer, ServerError, free_port, port_in_use
from kit.supervise import Supervisor
from services.tenancy.dburl import (
    APP_ROLE_DEFAULT,
    GATEWAY_ROLE_DEFAULT,
    OWNER_ROLE_DEFAULT,
    plain,
)

DATABASE_NAME = "tenantkit"
# Settings the user may export that the gateway reads as they are (SPEC §3).
USERS_PASSTHROUGH = ("TENANT_SETTING",)
GATEWAY_PASSTHROUGH = (
    "JWT_SECRET",
    "GATEWAY_AUTH_MODES",
    "GATEWAY_BASE_DOMAIN",
    "GATEWAY_ROUTES",
    "DEFAULT_RATE_LIMIT_PER_SECOND",
    "RATE_LIMIT_LEASE_MAX",
    "TENANT_CACHE_TTL_SECONDS",
    "UPSTREAM_TIMEOUT_SECONDS",
    "REQUEST_BODY_TIMEOUT_SECONDS",
    "JWT_AUDIENCE",
    "JWT_ISSUER",
    "GATEWAY_CACHE_SECRET",
    "GATEWAY_REPLICAS",
    "REDIS_MAX_CONNECTIONS",
    # The gateway reads the fairness switch too (kit.procs strips it from inherited settings).
    "TENANT_FAIRNESS",
    "OPENAPI_REFRESH_SECONDS",
    *("LOG_FORMAT", "OTEL_EXPORTER_OTLP_ENDPOINT"),
)
# Settings the user may export that every service reads as they are (fairness, SPEC §3).
SERVICES_PASSTHROUGH = (
    "TENANT_FAIRNESS",
    "TENANT_POOL_SHARE_PERCENT",
    "TENANT_POOL_WAIT_SECONDS",
    "TENANT_STATEMENT_TIMEOUT_MS",
)
# What every process (the services too) takes from `make run`'s environment.
OBSERVE_PASSTHROUGH = ("LOG_FORMAT", "OTEL_EXPORTER_OTLP_ENDPOINT")
# Stopping everything must fit in the SPEC's 10 s: services first, then the servers.
SERVICES_STOP_SECONDS = 4.0
SERVERS_STOP_SECONDS = 4.0


# Role URL setting -> (the role's default name, its generated password in secrets.env).
ROLES = {
    "OWNER_DATABASE_URL": (OWNER_ROLE_DEFAULT, "OWNER_DB_PASSWORD"),
    "GATEWAY_DATABASE_URL": (GATEWAY_ROLE_DEFAULT, "GATEWAY_DB_PASSWORD"),
    "APP_DATABASE_URL": (APP_ROLE_DEFAULT, "APP_DB_PASSWORD"),
}


def role_urls(
    database_url: str, secrets: Mapping[str, str], environ: Mapping[str, str]
) -> dict[str, str]:
    """Each role's URL: as exported, else DATABASE_URL's server with the generated password."""
    bootstrap = make_url(database_url)
    return {
        setting: environ.get(setting, "").strip()
        or plain(bootstrap.set(username=role, password=secrets[password]))
        for setting, (role, password) in ROLES.items()
    }


class Shutdown(Exception):
    """SIGINT or SIGTERM arrived."""


def _header_only(environ: Mapping[str, str]) -> bool:
    """True when the gateway runs the tutorial's way: X-Tenant-ID decides, no credential."""
    modes = {m.strip() for m in environ.get("GATEWAY_AUTH_MODES", "api_key,jwt").split(",")}
    credential = "api_key" in modes or ("jwt" in modes and bool(environ.get("JWT_SECRET")))
    return "header" in modes and not credential


def banner(*, gateway_url: str, database_url: str, admin_token: str, header_mode: bool) -> str:
    """What the user needs to start: where things are and one request to paste."""
    lines = [
        "",
        f"tenantkit is ready: {gateway_url}",
        "",
        '  database (psql "$DATABASE_URL", or `make psql`):',
        f"    export DATABASE_URL={shlex.quote(database_url)}",
        f"  admin token: {admin_token}",
        "",
    ]
    if header_mode:
        lines += [
            "  try the tutorial (tenants first, then users):",
            '    psql "$DATABASE_URL" -c "INSERT INTO tenants (name) VALUES '
            "('Tenant A'), ('Tenant B');\"",
            f'    curl -X POST "{gateway_url}/users/" -H "X-Tenant-ID: 1" -d "name=Alice"',
            f'    curl -X GET "{gateway_url}/users/" -H "X-Tenant-ID: 1"',
        ]
    else:
        lines += [
            "  create a tenant (the answer holds its API key):",
            f'    curl -X POST "{gateway_url}/admin/tenants" -H "Authorization: Bearer '
            f'{admin_token}" -H "Content-Type: application/json" -d \'{{"name": "Acme"}}\'',
        ]
    lines += ["", "  Ctrl-C stops everything.", ""]
    return "\n".join(lines)


class Runner:
    """Brings the stack up in order and takes it down in reverse."""

    def __init__(self, config: RunConfig, follower: LogFollower) -> None:
        self.config = config
        self.data = DataDir(config.data_dir)
        self.follower = follower
        self.supervisor = Supervisor()
        self.services: set[str] = set()
        self.servers: set[str] = set()
        self._postgres: PgServer

    def up(self) -> str:
        """Start everything; returns the banner."""
        started = time.monotonic()
        data, environ = self.data, self.config.environ
        running = data.running_stack()
        if running is not None:
            raise ConfigError(
                f"kit: a stack already runs from {data.path} (pid {running['KIT_RUN_PID']}); "
                "stop it first, or set KIT_DATA_DIR to another folder"
            )
        data.prepare()
        secrets = data.secrets()
        # Exported values win over the generated ones (SPEC §3).
        admin_token = environ.get("ADMIN_TOKEN") or secrets["ADMIN_TOKEN"]
        signing_secret = (
            environ.get("INTERNAL_SIGNING_SECRET") or secrets["INTERNAL_SIGNING_SECRET"]
        )

        database_url = self.config.database_url or self._start_postgres()
        if self.config.redis_url:
            # Someone else's Redis: its ACL is theirs; the services get no URL of it unless
            # REDIS_SERVICES_URL names their user there.
            redis_url = self.config.redis_url
            services_redis_url = environ.get("REDIS_SERVICES_URL") or None
        else:
            redis_url, services_redis_url = self._start_redis(secrets)
        roles = role_urls(database_url, secrets, environ)
        # Migrations get the placements as exported (a bootstrap password included); the
        # running processes only where they are: each connects as its own role.
        placed = self._placements(with_credentials=False)

        self.follower.add("migrate", data.logs / "migrate.log")
        run_migrations(
            database_url=database_url,
            role_urls={**roles, **self._placements(with_credentials=True)},
            log_path=data.logs / "migrate.log",
        )
        # Each process gets its own role's URL only: no service or gateway holds the
        # bootstrap (superuser) URL or the owner's.
        users = self._start(
            "users",
            self.config.users_port,
            {
                **{k: environ[k] for k in OBSERVE_PASSTHROUGH if k in environ},
                **{k: environ[k] for k in USERS_PASSTHROUGH if k in environ},
                **{k: environ[k] for k in SERVICES_PASSTHROUGH if k in environ},
                "APP_DATABASE_URL": roles["APP_DATABASE_URL"],
                "INTERNAL_SIGNING_SECRET": signing_secret,
                **({"REDIS_URL": services_redis_url} if services_redis_url else {}),
                **placed,
            },
        )
        gateway_env = {k: environ[k] for k in GATEWAY_PASSTHROUGH if k in environ}
        gateway = self._start(
            "gateway",
            self.config.gateway_port,
            {
                **gateway_env,
                "GATEWAY_DATABASE_URL": roles["GATEWAY_DATABASE_URL"],
                # Only for the tenant lifecycle (purge, export, import): docs/lifecycle.md.
                "APP_DATABASE_URL": roles["APP_DATABASE_URL"],
                "REDIS_URL": redis_url,
                "ADMIN_TOKEN": admin_token,
                "INTERNAL_SIGNING_SECRET": signing_secret,
                "USERS_URL": users,
                **placed,
            },
        )
        gateway_url = gateway.replace("127.0.0.1", "localhost")
        data.publish_stack(
            {
                "GATEWAY_URL": gateway_url,
                "DATABASE_URL": database_url,
                "REDIS_URL": redis_url,
                "ADMIN_TOKEN": admin_token,
            }
        )
        took = time.monotonic() - started
        names = ["shared", *self.config.tenant_databases, *self.config.kit_placements]
        where = f"  placements: {', '.join(names)}\n" if len(names) > 1 else ""
        return (
            banner(
                gateway_url=gateway_url,
                database_url=database_url,
                admin_token=admin_token,
                header_mode=_header_only(environ),
            )
            + where
            + f"  (ready in {took:.1f} s; data in {data.path})\n"
        )

    def _start_postgres(self) -> str:
        port = self._server_port("POSTGRES_PORT")
        server = PgServer(self.data.postgres, port=port)
        self.follower.add("postgres", server.log_path)
        server.start()
        self._supervise_server("postgres", server)
        self._postgres = server
        return server.create_database(DATABASE_NAME)

    def _placements(self, *, with_credentials: bool) -> dict[str, str]:
        """TENANT_DATABASES: the exported ones, then KIT_PLACEMENTS' own databases
        (`tenantkit_<name>` on the kit's server, migrated with DATABASE_URL's user)."""
        placements = {
            n: u if with_credentials else plain(make_url(u).set(username=None, password=None))
            for n, u in self.config.tenant_databases.items()
        }
        for name in self.config.kit_placements:
            self._postgres.create_database(f"{DATABASE_NAME}_{name}")
            port = self._postgres.port
            placements[name] = f"postgresql://127.0.0.1:{port}/{DATABASE_NAME}_{name}"
        if not placements:
            return {}
        return {"TENANT_DATABASES": ",".join(f"{n}={u}" for n, u in placements.items())}

    def _start_redis(self, secrets: dict[str, str]) -> tuple[str, str]:
        """Start the kit's own Redis; the gateway's and the services' URLs."""
        # No persistence: Redis holds only caches and rate-limit state, rebuilt from
        # PostgreSQL on demand; a stale cache restored from disk would only mislead.
        passwords = RedisPasswords(
            **{user: secrets[name] for user, name in REDIS_PASSWORDS.items()}
        )
        server = RedisServer(
            self.data.redis, port=self._server_port("REDIS_PORT"), passwords=passwords
        )
        self.follower.add("redis", server.log_path)
        server.start()
        self._supervise_server("redis", server)
        return server.url, server.services_url

    def _supervise_server(self, name: str, server: PgServer | RedisServer) -> None:
        """Restarted on the same port and data folder, so every URL stays valid."""

        def restart() -> Child:
            server.stop(timeout=1)
            server.start()
            assert server.child is not None
            return server.child

        assert server.child is not None
        self.servers.add(name)
        self.supervisor.add(name, server.child, restart)

    def _server_port(self, name: str) -> int:
        """The port used last time (so DATABASE_URL stays the same), or a new free one."""
        port = self.data.kept_port(name)
        if port is None or port_in_use(port):
            if port is not None:
                print(f"kit: port {port} ({name}) is taken now; using another", flush=True)
            port = free_port()
            self.data.keep_port(name, port)
        return port

    def _start(self, name: str, port: int, env: dict[str, str]) -> str:
        self.follower.add(name, service_log_path(self.data.logs, name, port))
        service = start_service(name, env=env, port=port, log_dir=self.data.logs)
        self.services.add(name)
        # The same port again: the gateway's USERS_URL and the printed URL stay valid.
        self.supervisor.add(
            name,
            service.child,
            lambda: start_service(name, env=env, port=port, log_dir=self.data.logs).child,
        )
        return service.url

    def watch(self) -> str:
        """Keep the stack running; returns the line saying which child crashed too often."""
        return self.supervisor.watch()

    def down(self) -> None:
        """Services first (they use the servers), then the servers; all within 10 s."""
        services = self.supervisor.children(self.services)
        stop_together(list(reversed(services)), SERVICES_STOP_SECONDS)
        stop_together(list(reversed(self.supervisor.children(self.servers))), SERVERS_STOP_SECONDS)
        self.data.withdraw_stack()


def _raise_shutdown(signum: int, frame: FrameType | None) -> None:
    # Once is enough: the stop sequence is bounded, a second signal must not cut it short.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise Shutdown(signal.Signals(signum).name)


def main() -> int:
    """Run until Ctrl-C/SIGTERM (exit 0) or until a process crashes too often (exit 1)."""
    # Under `make run`, make is our parent: if make is killed, we stop the stack too.
    die_with_parent(signal.SIGTERM)
    signal.signal(signal.SIGINT, _raise_shutdown)
    signal.signal(signal.SIGTERM, _raise_shutdown)
    try:
        config = read_config(os.environ)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    follower = LogFollower()
    follower.start()
    runner = Runner(config, follower)
    status = 1
    try:
        print(f"kit: starting tenantkit (data in {runner.data.path})", flush=True)
        message = runner.up()
        print(message, flush=True)
        print(runner.watch(), file=sys.stderr, flush=True)
    except Shutdown as exc:
        print(f"kit: {exc}: stopping", flush=True)
        status = 0
    except (ConfigError, ServerError, ProcessError) as exc:
        print(str(exc) if str(exc).startswith("kit:") else f"kit: {exc}", file=sys.stderr)
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        runner.down()
        stop_all()  # anything caught half-started by the signal
        follower.stop()
    if status == 0:
        print("kit: stopped", flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
