"""What `make run` keeps in $KIT_DATA_DIR between runs: servers' data, secrets, ports, logs."""

from __future__ import annotations

import contextlib
import os
import shlex
from pathlib import Path
from secrets import token_hex, token_urlsafe

import psutil

# One password per database role (SPEC §7): none shares another's, nor the superuser's.
ROLE_PASSWORDS = ("OWNER_DB_PASSWORD", "GATEWAY_DB_PASSWORD", "APP_DB_PASSWORD")
GENERATED_SECRETS = ("ADMIN_TOKEN", "INTERNAL_SIGNING_SECRET", *ROLE_PASSWORDS)
# One password per Redis ACL user (kit.redisacl), for the Redis `make run` starts itself.
REDIS_PASSWORDS = {
    "admin": "REDIS_ADMIN_PASSWORD",
    "gateway": "REDIS_GATEWAY_PASSWORD",
    "services": "REDIS_SERVICES_PASSWORD",
}


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines (shell-quoted, as `write_env_file` writes them); {} when missing."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return {}
    values: dict[str, str] = {}
    for line in text.splitlines():
        if "=" in line and not line.lstrip().startswith("#"):
            key, _, raw = line.partition("=")
            parts = shlex.split(raw)
            values[key.strip()] = parts[0] if parts else ""
    return values


def write_env_file(path: Path, values: dict[str, str], *, private: bool = False) -> None:
    """Write KEY=VALUE lines a shell can `source`; `private` files are created 0600."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600 if private else 0o644)
    with os.fdopen(fd, "w") as f:
        f.writelines(f"{key}={shlex.quote(value)}\n" for key, value in values.items())
    tmp.replace(path)


class DataDir:
    """The layout of $KIT_DATA_DIR."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path).resolve()
        self.postgres = self.path / "postgres"
        self.redis = self.path / "redis"
        self.logs = self.path / "logs"
        self.secrets_file = self.path / "secrets.env"
        self.ports_file = self.path / "ports.env"
        self.stack_file = self.path / "stack.env"

    def prepare(self) -> None:
        """Create the folders (searchable by others: PostgreSQL may run as `nobody`)."""
        self.path.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(exist_ok=True)
        self.path.chmod(0o711)

    def secrets(self) -> dict[str, str]:
        """The generated secrets, created on first use and kept (0600) for the next runs."""
        kept = read_env_file(self.secrets_file)
        names = (*GENERATED_SECRETS, *REDIS_PASSWORDS.values())
        if not all(kept.get(name) for name in names):
            kept = {name: kept.get(name) or _generate(name) for name in names}
            write_env_file(self.secrets_file, kept, private=True)
        return kept

    def kept_port(self, name: str) -> int | None:
        """A port chosen on an earlier run (so URLs stay the same across runs)."""
        value = read_env_file(self.ports_file).get(name, "")
        return int(value) if value.isdigit() else None

    def keep_port(self, name: str, port: int) -> None:
        """Remember `port` under `name` for the next runs."""
        ports = read_env_file(self.ports_file)
        ports[name] = str(port)
        write_env_file(self.ports_file, ports)

    def running_stack(self) -> dict[str, str] | None:
        """The connection info of the `make run` that is running from here, if one is."""
        info = read_env_file(self.stack_file)
        pid = info.get("KIT_RUN_PID", "")
        if not pid.isdigit() or not _alive(int(pid)):
            return None
        return info

    def publish_stack(self, info: dict[str, str]) -> None:
        """stack.env: how to reach the running stack (`psql` reads it); 0600, as it has secrets."""
        write_env_file(self.stack_file, {**info, "KIT_RUN_PID": str(os.getpid())}, private=True)

    def withdraw_stack(self) -> None:
        """Remove stack.env if this process wrote it (a newer run's stays)."""
        with contextlib.suppress(FileNotFoundError):
            if read_env_file(self.stack_file).get("KIT_RUN_PID") == str(os.getpid()):
                self.stack_file.unlink()


def _generate(name: str) -> str:
    # Hex passwords go into URLs without quoting.
    hex_named = (*ROLE_PASSWORDS, *REDIS_PASSWORDS.values())
    return token_hex(24) if name in hex_named else token_urlsafe(32)


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
