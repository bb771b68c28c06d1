"""The pytest plugin (`-p kit.testing`): real PostgreSQL, Redis and services for the tests.

Every server is a real process on a free port in a temporary folder, started on first use and
stopped at the end; see docs/architecture.md ("Test fixtures") for the contract.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import tempfile
import threading
from collections.abc import Callable, Generator, Iterator, Mapping
from pathlib import Path
from secrets import token_urlsafe

import httpx
import pytest

from kit import children
from kit.procs import ServiceProcess, start_service
from kit.servers import PgServer, RedisServer
from kit.stacks import (
    Database,
    ExternalRedis,
    ExternalService,
    Secrets,
    Stack,
    gateway_env,
    new_database,
    users_env,
)

# Re-exported: tests import these from kit.testing.
__all__ = [
    "Database",
    "ExternalRedis",
    "ExternalService",
    "Secrets",
    "Stack",
    "gateway_env",
    "new_database",
]

_REDIS_KEY = pytest.StashKey[RedisServer]()
_WORKDIR_KEY = pytest.StashKey[Path]()


def _workdir(config: pytest.Config) -> Path:
    """One temporary folder per session, searchable by the account PostgreSQL runs as."""
    if _WORKDIR_KEY not in config.stash:
        parent = Path(tempfile.gettempdir())
        if os.geteuid() == 0 and not _searchable_by_others(parent):
            parent = Path("/tmp")  # a private TMPDIR would lock PostgreSQL (as nobody) out
        path = Path(tempfile.mkdtemp(prefix="tenantkit-test-", dir=parent))
        # mkdtemp makes it 0700; PostgreSQL may run as `nobody` (we are root) and must get in.
        path.chmod(0o711)
        config.stash[_WORKDIR_KEY] = path
    return config.stash[_WORKDIR_KEY]


def _searchable_by_others(path: Path) -> bool:
    return all(p.stat().st_mode & 0o001 for p in [path.resolve(), *path.resolve().parents])


@pytest.fixture(scope="session")
def kit_workdir(pytestconfig: pytest.Config) -> Path:
    """The session's temporary folder (servers' data and every process's log)."""
    return _workdir(pytestconfig)


@pytest.fixture(scope="session")
def postgres_server(kit_workdir: Path) -> Iterator[PgServer]:
    """The session's PostgreSQL (tuned for tests: fsync off)."""
    server = PgServer(kit_workdir / "postgres", for_tests=True)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def database(request: pytest.FixtureRequest, kit_workdir: Path) -> Database:
    """The session's migrated database (or E2E_DATABASE_URL's)."""
    external = os.environ.get("E2E_DATABASE_URL")
    if external:
        return Database.derived("external", external)
    server: PgServer = request.getfixturevalue("postgres_server")
    return new_database(server, log_dir=kit_workdir / "logs", name="tenantkit_test")


@pytest.fixture(scope="session")
def redis_server(
    kit_workdir: Path, pytestconfig: pytest.Config
) -> Iterator[RedisServer | ExternalRedis]:
    """The session's Redis (or E2E_REDIS_URL's)."""
    external = os.environ.get("E2E_REDIS_URL")
    if external:
        # Gateways the tests start must share the external gateway's Redis (invalidation).
        yield ExternalRedis(
            url=external, services_url=os.environ.get("E2E_REDIS_SERVICES_URL") or None
        )
        return
    server = RedisServer(kit_workdir / "redis")
    server.start()
    pytestconfig.stash[_REDIS_KEY] = server
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def _redis_back_up(pytestconfig: pytest.Config) -> Iterator[None]:
    """A test may stop the session's Redis; the next test gets it back on the same port."""
    yield
    server = pytestconfig.stash.get(_REDIS_KEY, None)
    if server is not None and not server.running():
        server.start()


@pytest.fixture(scope="session", name="secrets")
def secrets_fixture() -> Secrets:
    """The session's secrets (E2E_ADMIN_TOKEN / E2E_JWT_SECRET when given)."""
    return Secrets(
        admin_token=os.environ.get("E2E_ADMIN_TOKEN") or token_urlsafe(32),
        signing_secret=token_urlsafe(32),
        jwt_secret=os.environ.get("E2E_JWT_SECRET") or token_urlsafe(32),
    )


@pytest.fixture(scope="session")
def users_service(
    database: Database,
    secrets: Secrets,
    kit_workdir: Path,
    redis_server: RedisServer | ExternalRedis,
) -> Iterator[ServiceProcess]:
    """The users service on `database`, with the `services` Redis user's URL."""
    env = users_env(database, secrets, redis_url=redis_server.services_url)
    service = start_service("users", env=env, log_dir=kit_workdir / "logs")
    yield service
    service.stop()


def _session_gateway(
    request: pytest.FixtureRequest, overrides: Mapping[str, str | None]
) -> Iterator[ServiceProcess]:
    database: Database = request.getfixturevalue("database")
    redis: RedisServer = request.getfixturevalue("redis_server")
    users: ServiceProcess = request.getfixturevalue("users_service")
    secrets: Secrets = request.getfixturevalue("secrets")
    env = gateway_env(database=database, redis_url=redis.url, users_url=users.url, secrets=secrets)
    service = start_service(
        "gateway", env={**env, **overrides}, log_dir=_workdir(request.config) / "logs"
    )
    yield service
    service.stop()


@pytest.fixture(scope="session")
def gateway(request: pytest.FixtureRequest) -> Iterator[ServiceProcess | ExternalService]:
    """The gateway in modes api_key,jwt,subdomain (or E2E_GATEWAY_URL's)."""
    external = os.environ.get("E2E_GATEWAY_URL")
    if external:
        service = ExternalService(url=external.rstrip("/"))
        secrets: Secrets = request.getfixturevalue("secrets")
        with _purging_what_it_creates(os.environ.get("E2E_ADMIN_URL") or service.url, secrets):
            yield service
        return
    yield from _session_gateway(request, {})


@contextlib.contextmanager
def _purging_what_it_creates(admin_url: str, secrets: Secrets) -> Iterator[None]:
    """A stack that outlives the session keeps none of its tenants: they are purged at the end.

    (A stack of the session's own goes with its database.)
    """
    auth = {"Authorization": f"Bearer {secrets.admin_token}"}
    with httpx.Client(base_url=admin_url, headers=auth, timeout=60) as client:
        before = {t["id"] for t in client.get("/admin/tenants").json()}
        yield
        created = [t["id"] for t in client.get("/admin/tenants").json() if t["id"] not in before]
        for tenant_id in created:
            client.delete(f"/admin/tenants/{tenant_id}", params={"purge": "true"})


@pytest.fixture(scope="session")
def header_gateway(request: pytest.FixtureRequest) -> Iterator[ServiceProcess]:
    """A gateway in the tutorial's header mode on the session's database."""
    yield from _session_gateway(
        request, {"GATEWAY_AUTH_MODES": "header", "GATEWAY_BASE_DOMAIN": None}
    )


@pytest.fixture(scope="session")
def admin(gateway: ServiceProcess | ExternalService, secrets: Secrets) -> Iterator[httpx.Client]:
    """An httpx client on `gateway`'s admin API (E2E_ADMIN_URL's) carrying the admin token."""
    with httpx.Client(
        # A gateway with an internal listener serves /admin there only.
        base_url=os.environ.get("E2E_ADMIN_URL") or gateway.url,
        headers={"Authorization": f"Bearer {secrets.admin_token}"},
        timeout=10,
    ) as client:
        yield client


StartService = Callable[..., ServiceProcess]


@pytest.fixture
def _service_defaults(request: pytest.FixtureRequest) -> Callable[[str], dict[str, str | None]]:
    """The default env of each service on the session stack (resolved only when asked)."""

    def defaults(name: str) -> dict[str, str | None]:
        database: Database = request.getfixturevalue("database")
        secrets: Secrets = request.getfixturevalue("secrets")
        redis: RedisServer = request.getfixturevalue("redis_server")
        if name == "users":
            return users_env(database, secrets, redis_url=redis.services_url)
        users: ServiceProcess = request.getfixturevalue("users_service")
        return gateway_env(
            database=database, redis_url=redis.url, users_url=users.url, secrets=secrets
        )

    return defaults


@pytest.fixture(name="start_service")
def start_service_fixture(
    _service_defaults: Callable[[str], dict[str, str | None]], kit_workdir: Path
) -> Iterator[StartService]:
    """start_service("gateway", env={...}): the session stack's settings with `env` on top."""
    started: list[ServiceProcess] = []

    def start(
        name: str,
        env: Mapping[str, str | None] | None = None,
        *,
        port: int | None = None,
        ready_path: str | None = "/readyz",
    ) -> ServiceProcess:
        merged = {**_service_defaults(name), **(env or {})}
        service = start_service(
            name, env=merged, port=port, ready_path=ready_path, log_dir=kit_workdir / "logs"
        )
        started.append(service)
        return service

    yield start
    for service in reversed(started):
        service.stop()


@pytest.fixture
def fresh_stack(
    postgres_server: PgServer, secrets: Secrets, kit_workdir: Path
) -> Iterator[Callable[..., Stack]]:
    """fresh_stack(gateway_env={...}, users_env={...}): a new database, Redis and services."""
    stacks: list[Stack] = []

    def build(
        *,
        gateway_env: Mapping[str, str | None] | None = None,
        users_env: Mapping[str, str | None] | None = None,
    ) -> Stack:
        logs = kit_workdir / "logs"
        database = new_database(postgres_server, log_dir=logs)
        # Its own Redis too: tenant ids restart at 1, so a shared cache would mix stacks up.
        redis = RedisServer(kit_workdir / f"redis-{database.name}")
        redis.start()
        own = _users_env(database, secrets, redis_url=redis.services_url)
        users = start_service("users", env={**own, **(users_env or {})}, log_dir=logs)
        env = _gateway_env(
            database=database, redis_url=redis.url, users_url=users.url, secrets=secrets
        )
        gw = start_service("gateway", env={**env, **(gateway_env or {})}, log_dir=logs)
        stack = Stack(database=database, redis=redis, users=users, gateway=gw, secrets=secrets)
        stacks.append(stack)
        return stack

    yield build
    for stack in reversed(stacks):
        stack.gateway.stop()
        stack.users.stop()
        stack.redis.stop()


# The factories above shadow these names with their keyword arguments.
_users_env = users_env
_gateway_env = gateway_env


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """When a test fails, attach the output tail of every process the kit is running."""
    report = yield
    if not report.failed:
        return report
    for child in children.running():
        tail = child.tail(12 if child.name in ("postgres", "redis") else 30)
        if tail:
            state = "running" if child.alive() else f"EXITED {child.popen.returncode}"
            report.sections.append((f"{child.name} pid {child.pid} ({state}) log tail", tail))
    return report


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Nothing the kit started outlives the session; its folder goes unless a test failed."""
    children.stop_all()
    workdir = session.config.stash.get(_WORKDIR_KEY, None)
    if workdir is None:
        return
    if session.testsfailed:
        print(f"\nkit: servers' data and process logs kept in {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
def own_redis(kit_workdir: Path, request: pytest.FixtureRequest) -> Iterator[RedisServer]:
    """A Redis for this test alone, so killing it disturbs no other test."""
    server = RedisServer(kit_workdir / f"redis-{request.node.name}")
    server.start()
    yield server
    server.stop()


@contextlib.contextmanager
def silent_listener() -> Iterator[str]:
    """`127.0.0.1:PORT` of a server that accepts connections and never answers a byte."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.2)
    stop = threading.Event()
    conns: list[socket.socket] = []

    def accept() -> None:
        while not stop.is_set():
            try:
                conns.append(server.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.getsockname()[1]}"
    finally:
        stop.set()
        thread.join()
        for conn in conns:
            conn.close()
        server.close()


@pytest.fixture
def hanging_upstream() -> Iterator[str]:
    """The URL of an upstream that accepts connections and never answers."""
    with silent_listener() as address:
        yield f"http://{address}"
