"""A tenantkit compose stack under test: its project, env file and published ports."""

from __future__ import annotations

import json
import os
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TEST_OVERRIDE = Path(__file__).resolve().parent / "compose.test.yml"
# The stack make test-compose brings up: the kit's file and the test-only ports.
DEFAULT_FILES = (ROOT / "docker-compose.yml", TEST_OVERRIDE)

# How run.py hands the stack to the tests (and how a developer points them at a stack
# they brought up by hand).
ENV_PROJECT = "COMPOSE_TEST_PROJECT"
ENV_FILE = "COMPOSE_TEST_ENV_FILE"


def free_port() -> int:
    """A TCP port nobody listens on right now (127.0.0.1)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines of a compose .env file (no quoting: the kit writes none)."""
    values = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


@dataclass(frozen=True)
class ComposeStack:
    """`docker compose` bound to one project, env file and the kit's compose files."""

    project: str
    env_file: Path
    files: tuple[Path, ...] = DEFAULT_FILES

    @classmethod
    def from_environment(cls) -> ComposeStack:
        """The stack run.py started (COMPOSE_TEST_PROJECT, COMPOSE_TEST_ENV_FILE)."""
        return cls(project=os.environ[ENV_PROJECT], env_file=Path(os.environ[ENV_FILE]))

    @property
    def settings(self) -> dict[str, str]:
        return read_env_file(self.env_file)

    def command(self, *args: str, profiles: tuple[str, ...] = ("scale",)) -> list[str]:
        return [
            "docker",
            "compose",
            "--project-name",
            self.project,
            "--project-directory",
            str(ROOT),
            "--env-file",
            str(self.env_file),
            *(arg for path in self.files for arg in ("--file", str(path))),
            *(arg for profile in profiles for arg in ("--profile", profile)),
            *args,
        ]

    def run(
        self,
        *args: str,
        timeout: float = 120,
        check: bool = True,
        profiles: tuple[str, ...] = ("scale",),
        env: dict[str, str] | None = None,
    ) -> str:
        """Run one compose command (`env` overrides the env file's values); its stdout."""
        done = subprocess.run(
            self.command(*args, profiles=profiles),
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, **(env or {})},
        )
        if check and done.returncode != 0:
            raise RuntimeError(f"docker compose {' '.join(args)} failed:\n{done.stderr}")
        return done.stdout

    def port(self, service: str, container_port: int, *, index: int = 1) -> int:
        """The host port (127.0.0.1) published for one replica of a service."""
        out = self.run("port", "--index", str(index), service, str(container_port)).strip()
        return int(out.rsplit(":", 1)[1])

    def url(self, service: str, container_port: int, *, index: int = 1) -> str:
        return f"http://127.0.0.1:{self.port(service, container_port, index=index)}"

    def containers(self, service: str | None = None) -> list[dict]:
        """`docker compose ps` rows of a service's containers (every service's when None)."""
        out = self.run("ps", "--format", "json", *([service] if service else []))
        rows = [json.loads(line) for line in out.splitlines() if line.strip().startswith("{")]
        if len(rows) == 1 and isinstance(rows[0], list):
            rows = rows[0]
        return rows

    def owner_database_url(self) -> str:
        password = self.settings["POSTGRES_PASSWORD"]
        return (
            f"postgresql://tenantkit:{password}@127.0.0.1:{self.port('postgres', 5432)}/tenantkit"
        )

    def pgbouncer_url(self, *, user: str, password: str, database: str = "tenantkit") -> str:
        port = self.port("pgbouncer", 6432)
        return f"postgresql://{user}:{password}@127.0.0.1:{port}/{database}"
