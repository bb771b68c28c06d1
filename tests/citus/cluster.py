"""A Citus coordinator and two workers on loopback ports, made with the kit's own server code.

Citus itself is not part of tenantkit: this finds a PostgreSQL installation where it is
installed (docs/scaling.md §6 says how it was built for the rehearsal), or says it is not.
"""

from __future__ import annotations

import re
import secrets
import subprocess
from dataclasses import dataclass, fields
from pathlib import Path

import psycopg2
import psycopg2.extensions
from sqlalchemy.engine import make_url

from kit.binaries import PgBinaries, postgres_installations
from kit.servers import SUPERUSER, PgServer
from kit.stacks import Database, new_database
from services.tenancy.dburl import OWNER_ROLE_DEFAULT, derive_role_url, plain

ROOT = Path(__file__).resolve().parents[2]
SCALING_DOC = ROOT / "docs" / "scaling.md"
# The doc's SQL blocks that `make test-citus` runs: the ones right after such a line, as the
# role it names.
DOC_MARKER = re.compile(r"<!-- make test-citus runs the next block as (a superuser|the owner) -->")
WORKERS = 2
EARLY_TENANTS = ("before-citus-1", "before-citus-2")
EARLY_ROWS = (
    "INSERT INTO tenants (name) VALUES " + ", ".join(f"('{t}')" for t in EARLY_TENANTS),
    "INSERT INTO users (tenant_id, name, email) "
    "SELECT t.id, 'early ' || n, 'early' || n || '@x.example' "
    "FROM tenants t, generate_series(1, 2) AS n WHERE t.name LIKE 'before-citus-%'",
)


def citus_installation() -> PgBinaries | None:
    """The newest PostgreSQL whose library and extension folders hold Citus, if any."""
    for binaries in postgres_installations():
        pg_config = binaries.tool("pg_config")
        if not pg_config.exists():
            continue
        out = subprocess.run(
            [str(pg_config), "--pkglibdir", "--sharedir"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        ).stdout.split()
        if len(out) != 2:
            continue
        libdir, sharedir = (Path(p) for p in out)
        if (libdir / "citus.so").exists() and (sharedir / "extension/citus.control").exists():
            return binaries
    return None


def _server_settings(binaries: PgBinaries) -> dict[str, str]:
    settings = {
        "shared_preload_libraries": "citus",
        # Shard moves and splits copy by logical replication.
        "wal_level": "logical",
        # Citus commits writes that span nodes with two-phase commit.
        "max_prepared_transactions": "100",
        # The test servers have no TLS; and run as `nobody` under root, libpq's look for a
        # client certificate in root's home fails on permissions instead of finding none.
        "citus.node_conninfo": "sslmode=disable",
    }
    described = subprocess.run(
        [str(binaries.tool("postgres")), "--describe-config"],
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    ).stdout
    # Where the server restricts logical decoding plugins (PostgreSQL 15.20 as Debian ships
    # it), Citus's own decoder must be on the list or isolate_tenant_to_new_shard fails.
    if re.search(r"^output_plugin_libraries\t", described, re.MULTILINE):
        settings["output_plugin_libraries"] = "pgoutput,test_decoding,citus"
    return settings


@dataclass
class CitusCluster:
    """Coordinator and workers: PgServers sharing one superuser password."""

    coordinator: PgServer
    workers: list[PgServer]

    @classmethod
    def create(cls, base_dir: Path, binaries: PgBinaries) -> CitusCluster:
        """The three servers (not started); the same superuser password on each."""
        password = secrets.token_urlsafe(24)
        settings = _server_settings(binaries)
        nodes = []
        for name in ["coordinator", *(f"worker{n}" for n in range(1, WORKERS + 1))]:
            node_dir = base_dir / name
            node_dir.mkdir(parents=True, exist_ok=True)
            (node_dir / "superuser.password").write_text(password + "\n")
            (node_dir / "superuser.password").chmod(0o600)
            nodes.append(PgServer(node_dir, for_tests=True, binaries=binaries, settings=settings))
        return cls(coordinator=nodes[0], workers=nodes[1:])

    @property
    def nodes(self) -> list[PgServer]:
        return [self.coordinator, *self.workers]

    def start(self) -> None:
        """Start every node."""
        for node in self.nodes:
            node.start()

    def stop(self) -> None:
        """Stop every node."""
        for node in reversed(self.nodes):
            node.stop()


def _run(conn: psycopg2.extensions.connection, *statements: str) -> None:
    with conn.cursor() as cur:
        for statement in statements:
            cur.execute(statement)


def _on_node(node: PgServer, dbname: str, *statements: str) -> None:
    conn = node.connect(dbname)
    conn.autocommit = True
    try:
        _run(conn, *statements)
    finally:
        conn.close()


def _authinfo(role: str, password: str) -> str:
    # nodeid 0: every node; -1: the coordinator's connections to itself.
    return (
        "INSERT INTO pg_dist_authinfo (nodeid, rolename, authinfo) "
        f"SELECT n, {_literal(role)}, {_literal('password=' + password)} "
        "FROM unnest(ARRAY[0, -1]) AS n ON CONFLICT DO NOTHING"
    )


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _login_roles(database: Database) -> dict[str, str]:
    """Every role (and its password) that the stack's URLs log in with."""
    roles: dict[str, str] = {}
    for field in fields(database):
        value = getattr(database, field.name)
        if isinstance(value, str) and value.startswith("postgres"):
            roles |= _login_roles_of(value)
    return roles


def _login_roles_of(url: str) -> dict[str, str]:
    parsed = make_url(url)
    if parsed.username and parsed.password:
        return {parsed.username: str(parsed.password)}
    return {}


def doc_sql_blocks(doc: Path = SCALING_DOC) -> list[tuple[str, str]]:
    """(who, SQL) of each block of docs/scaling.md that follows a marker, in order."""
    text = doc.read_text()
    pattern = DOC_MARKER.pattern + r"\s*```sql\n(.*?)```"
    blocks = re.findall(pattern, text, re.DOTALL)
    if not blocks:
        raise RuntimeError(f"no SQL block follows a make test-citus marker in {doc}")
    return blocks


def run_psql(binaries: PgBinaries, url: str, sql: str, log: Path) -> None:
    """Run `sql` with psql as a reader of the doc would, stopping at the first error."""
    with log.open("a") as out:
        result = subprocess.run(
            [str(binaries.tool("psql")), "-X", "-v", "ON_ERROR_STOP=1", "-d", url, "-f", "-"],
            input=sql,
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=300,
            check=False,
        )
    if result.returncode != 0:
        tail = log.read_text().strip().splitlines()[-5:]
        raise RuntimeError("docs/scaling.md §6 SQL failed:\n" + "\n".join(tail))


def prepare_database(cluster: CitusCluster, *, name: str, log_dir: Path) -> Database:
    """Citus on every node, the workers added, migrations, then the doc's own steps."""
    coordinator = cluster.coordinator
    for node in cluster.nodes:
        node.create_database(name)
        _on_node(node, name, "CREATE EXTENSION IF NOT EXISTS citus")
    # The superuser's own connections between nodes (role DDL, distribution).
    for node in cluster.nodes:
        _on_node(node, name, _authinfo(SUPERUSER, coordinator.password))
    _on_node(
        coordinator,
        name,
        f"SELECT citus_set_coordinator_host('127.0.0.1', {coordinator.port})",
        *(f"SELECT citus_add_node('127.0.0.1', {w.port})" for w in cluster.workers),
    )
    log_dir.mkdir(parents=True, exist_ok=True)
    # Node authentication before the migrations (docs/scaling.md §6): their DDL runs as the
    # owner, and Citus propagates it to the workers as the owner. pg_dist_authinfo takes only
    # existing roles, so each login role is made first, with the password the migrations
    # derive for it; they then give it its attributes and grants.
    bootstrap = coordinator.owner_url(name)
    owner_url = plain(derive_role_url(bootstrap, role=OWNER_ROLE_DEFAULT))
    roles = _login_roles(Database.derived(name, bootstrap)) | _login_roles_of(owner_url)
    roles.pop(SUPERUSER, None)  # already known to every node, above
    for role, password in roles.items():
        _on_node(coordinator, name, f'CREATE ROLE "{role}" LOGIN PASSWORD {_literal(password)}')
        for node in cluster.nodes:
            _on_node(node, name, _authinfo(role, password))
    database = new_database(coordinator, log_dir=log_dir, name=name)
    # Tenants with users before distribution, as a database that grows into Citus has: the
    # doc's steps must carry rows and id counters over (tests/citus checks they did).
    _on_node(coordinator, name, *EARLY_ROWS)
    for who, block in doc_sql_blocks():
        url = database.url if who == "a superuser" else owner_url
        run_psql(coordinator.binaries, url, block, log_dir / "scaling-doc.log")
    return database
