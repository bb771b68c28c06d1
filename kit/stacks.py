"""What a test stack is made of: databases, secrets and each service's settings."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from sqlalchemy.engine import make_url

from kit.procs import ServiceProcess, run_migrations
from kit.servers import PgServer, RedisServer
from services.tenancy.dburl import (
    OWNER_ROLE_DEFAULT,
    derive_app_url,
    derive_gateway_url,
    derive_role_url,
    plain,
)

_names = itertools.count(1)


@dataclass(frozen=True, slots=True)
class Database:
    """A migrated database: the bootstrap (superuser) URL and each role's URL (plain URLs).

    Tests set data up through `url`; the processes they start connect as the roles.
    """

    name: str
    url: str
    app_url: str
    gateway_url: str

    @classmethod
    def derived(cls, name: str, url: str) -> Database:
        """The roles' URLs as migrations derive them from `url` alone."""
        return cls(
            name=name,
            url=url,
            app_url=plain(derive_app_url(url)),
            gateway_url=plain(derive_gateway_url(url)),
        )


@dataclass(frozen=True, slots=True)
class Secrets:
    """The shared secrets every process of one test stack is started with."""

    admin_token: str
    signing_secret: str
    jwt_secret: str


@dataclass(frozen=True, slots=True)
class ExternalService:
    """A service someone else runs (E2E_GATEWAY_URL): only its URL is known."""

    url: str


@dataclass(frozen=True, slots=True)
class ExternalRedis:
    """A Redis someone else runs (E2E_REDIS_URL, e.g. the compose stack's): its URLs.

    `url` is the gateway user's; `services_url` (E2E_REDIS_SERVICES_URL) the services'.
    """

    url: str
    services_url: str | None = None


@dataclass
class Stack:
    """A whole tenantkit stack of its own: database, Redis, users service, gateway."""

    database: Database
    redis: RedisServer
    users: ServiceProcess
    gateway: ServiceProcess
    secrets: Secrets
    stopped: list[ServiceProcess] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.gateway.url

    def admin_client(self) -> httpx.Client:
        """An httpx client on this stack's gateway carrying the admin token."""
        return httpx.Client(
            base_url=self.url,
            headers={"Authorization": f"Bearer {self.secrets.admin_token}"},
            timeout=10,
        )


# Migrated once per cluster, then copied: CREATE DATABASE ... TEMPLATE takes a fraction of a
# second where `python -m migrations` takes seconds. Roles are cluster-wide, so the copy's
# grants, policies and alembic_version are exactly what migrating it would have made.
_TEMPLATE = "tenantkit_template"
_templated: set[Path] = set()


def new_database(server: PgServer, *, log_dir: Path, name: str | None = None) -> Database:
    """A migrated database (a copy of the cluster's migrated template); its and roles' URLs."""
    name = name or f"tenantkit_{next(_names)}"
    if server.pgdata not in _templated:
        template_url = server.create_database(_TEMPLATE)
        run_migrations(database_url=template_url, log_path=log_dir / f"migrate-{_TEMPLATE}.log")
        _templated.add(server.pgdata)
    url = server.create_database(name, template=_TEMPLATE)
    _copy_database_acl(server, _TEMPLATE, name)
    database = Database.derived(name, url)
    reset_role_passwords(server, database)
    return database


def reset_role_passwords(server: PgServer, database: Database) -> None:
    """The roles' derived passwords, as a migration run on this database would set them.

    Roles are cluster-wide: a test (or `make run` on the session's server) that migrated
    with passwords of its own changed them for every database of the cluster.
    """
    urls = [
        make_url(database.app_url),
        make_url(database.gateway_url),
        derive_role_url(database.url, role=OWNER_ROLE_DEFAULT),
    ]
    conn = server.connect()
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            for url in urls:
                cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (url.username,))
                if cur.fetchone() is not None and url.password:
                    name = str(url.username).replace('"', '""')
                    cur.execute(f'ALTER ROLE "{name}" PASSWORD %s', (str(url.password),))
    finally:
        conn.close()


def _copy_database_acl(server: PgServer, source: str, target: str) -> None:
    """GRANT/REVOKE on `target` what `source` has: TEMPLATE copies the contents, not the ACL."""
    conn = server.connect()
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(
                "SELECT CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(r.rolname) END,"
                " a.privilege_type"
                " FROM pg_database d,"
                " aclexplode(coalesce(d.datacl, acldefault('d', d.datdba))) a"
                " LEFT JOIN pg_roles r ON r.oid = a.grantee"
                " WHERE d.datname = %s",
                (source,),
            )
            grants = cur.fetchall()
            cur.execute(f'REVOKE ALL ON DATABASE "{target}" FROM PUBLIC')
            for grantee, privilege in grants:
                cur.execute(f'GRANT {privilege} ON DATABASE "{target}" TO {grantee}')
    finally:
        conn.close()


def users_env(
    database: Database, secrets: Secrets, *, redis_url: str | None = None
) -> dict[str, str | None]:
    """The users service's settings for one stack; `redis_url` is the services' ACL user's."""
    return {
        "APP_DATABASE_URL": database.app_url,
        "INTERNAL_SIGNING_SECRET": secrets.signing_secret,
        # Replay protection only: the `services` user reaches tk:nonce:* and nothing else.
        "REDIS_URL": redis_url,
    }


def gateway_env(
    *, database: Database, redis_url: str, users_url: str, secrets: Secrets
) -> dict[str, str | None]:
    """The gateway's settings for one stack: modes api_key,jwt,subdomain on example.test."""
    return {
        "GATEWAY_DATABASE_URL": database.gateway_url,
        # The tenant lifecycle (purge, export, import) works on tenant tables as this role.
        "APP_DATABASE_URL": database.app_url,
        "REDIS_URL": redis_url,
        "USERS_URL": users_url,
        "ADMIN_TOKEN": secrets.admin_token,
        "INTERNAL_SIGNING_SECRET": secrets.signing_secret,
        "JWT_SECRET": secrets.jwt_secret,
        "GATEWAY_AUTH_MODES": "api_key,jwt,subdomain",
        "GATEWAY_BASE_DOMAIN": "example.test",
        # High enough that ordinary tests never meet it; rate-limit tests set their own.
        "DEFAULT_RATE_LIMIT_PER_SECOND": "1000",
        # Every test client is 127.0.0.1: one address for the whole suite, whose probes of
        # revoked and random keys would slow the next test's fresh keys. The key guard's own
        # tests (gateway/tests/test_keyguard.py) run gateways with their own budgets.
        "KEY_LOOKUPS_PER_CLIENT_PER_SECOND": "1000",
    }
