"""tenantkit's own processes (migrations, users service, gateway) started as real subprocesses."""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from kit.children import Child, log_tail, spawn, wait_until
from kit.servers import free_port

ROOT = Path(__file__).resolve().parent.parent

# name -> (python module, host variable, port variable)
SERVICES: dict[str, tuple[str, str, str]] = {
    "gateway": ("gateway", "GATEWAY_HOST", "GATEWAY_PORT"),
    "users": ("services.users", "USERS_HOST", "USERS_PORT"),
}

# Settings a developer may have exported in their shell: a child gets only what we pass,
# so a stray DATABASE_URL can never point a test at the wrong database.
SETTINGS = (
    "DATABASE_URL",
    "OWNER_DATABASE_URL",
    "GATEWAY_DATABASE_URL",
    "APP_DATABASE_URL",
    "REDIS_URL",
    "ADMIN_TOKEN",
    "INTERNAL_SIGNING_SECRET",
    "JWT_SECRET",
    "GATEWAY_AUTH_MODES",
    "GATEWAY_BASE_DOMAIN",
    "GATEWAY_ROUTES",
    "USERS_URL",
    "DEFAULT_RATE_LIMIT_PER_SECOND",
    "RATE_LIMIT_LEASE_MAX",
    "TENANT_CACHE_TTL_SECONDS",
    "TENANT_SETTING",
    "UPSTREAM_TIMEOUT_SECONDS",
    "TENANT_FAIRNESS",
    "TENANT_POOL_SHARE_PERCENT",
    "TENANT_POOL_WAIT_SECONDS",
    "TENANT_STATEMENT_TIMEOUT_MS",
    "GATEWAY_HOST",
    "GATEWAY_PORT",
    "USERS_HOST",
    "USERS_PORT",
    # A developer's LOG_FORMAT=text must not change what the tests parse.
    "LOG_FORMAT",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OPENAPI_REFRESH_SECONDS",
)
_BIND_ERROR = "address already in use"


class ProcessError(RuntimeError):
    """A tenantkit process exited or never became ready; the message carries its output tail."""


def child_env(env: Mapping[str, str | None]) -> dict[str, str]:
    """The inherited environment without tenantkit settings, plus `env` (None removes a key)."""
    base = {
        k: v
        for k, v in os.environ.items()
        if k not in SETTINGS and not k.startswith(("E2E_", "PG", "KIT_"))
    }
    base["PYTHONUNBUFFERED"] = "1"
    for key, value in env.items():
        if value is None:
            base.pop(key, None)
        else:
            base[key] = value
    return base


@dataclass(eq=False)
class ServiceProcess:
    """A running gateway or users service: where it listens and the process behind it."""

    name: str
    port: int
    child: Child
    env: dict[str, str] = field(repr=False)  # secrets: keep them out of failure reports

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self.child.pid

    def alive(self) -> bool:
        return self.child.alive()

    def tail(self, lines: int = 40) -> str:
        """The last lines of its output."""
        return self.child.tail(lines)

    def stop(self, timeout: float = 8.0) -> int | None:
        """SIGTERM (uvicorn's graceful shutdown), SIGKILL after `timeout` s."""
        return self.child.stop(timeout)


def http_status(url: str, *, timeout: float = 2.0) -> int | None:
    """The status of GET `url`, or None when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except (OSError, ValueError):
        return None


def service_log_path(log_dir: Path, name: str, port: int) -> Path:
    """Where `start_service` writes the output of `name` listening on `port`."""
    return log_dir / f"{name}-{port}.log"


def _answers_200(url: str) -> Callable[[], bool]:
    return lambda: http_status(url) == 200


def start_service(
    name: str,
    *,
    env: Mapping[str, str | None],
    log_dir: Path,
    argv: list[str] | None = None,
    port: int | None = None,
    host: str = "127.0.0.1",
    ready_path: str | None = "/readyz",
    ready_timeout: float = 30.0,
) -> ServiceProcess:
    """Start `python -m <service>` with exactly `env`, and wait until `ready_path` answers 200.

    `argv` runs something else (the kit's own tests use a stub); it listens on
    `<NAME>_HOST`/`<NAME>_PORT` like the real services.
    """
    module, host_var, port_var = SERVICES.get(
        name, (name, f"{name.upper()}_HOST", f"{name.upper()}_PORT")
    )
    command = argv or [sys.executable, "-m", module]
    port_given = port is not None
    for attempt in range(3):
        chosen = port if port is not None else free_port()
        full_env = child_env({**env, host_var: host, port_var: str(chosen)})
        child = spawn(
            name,
            command,
            env=full_env,
            cwd=ROOT,
            log_path=service_log_path(log_dir, name, chosen),
        )
        service = ServiceProcess(name=name, port=chosen, child=child, env=full_env)
        if ready_path is None:
            return service
        ready_url = f"http://{host}:{chosen}{ready_path}"
        if wait_until(_answers_200(ready_url), timeout=ready_timeout, child=child):
            return service
        tail = child.tail(30)
        died = not child.alive()
        service.stop()
        if not port_given and attempt < 2 and _BIND_ERROR in tail.lower():
            continue  # someone took the free port between our check and the bind
        state = f"exited with {child.popen.returncode}" if died else "never answered 200"
        raise ProcessError(
            f"{name} ({' '.join(command)}) {state} on {ready_url} within {ready_timeout:.0f} s; "
            f"output:\n{tail}"
        )
    raise AssertionError("unreachable")


def run_migrations(
    *, database_url: str, log_path: Path, role_urls: Mapping[str, str | None] | None = None
) -> None:
    """`python -m migrations` on `database_url`; raises with its output when it fails.

    `role_urls`: OWNER_/GATEWAY_/APP_DATABASE_URL when the roles are not to be derived.
    """
    env = child_env({"DATABASE_URL": database_url, **(role_urls or {})})
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        result = subprocess.run(
            [sys.executable, "-m", "migrations"],
            env=env,
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            timeout=120,
            check=False,
        )
    if result.returncode != 0:
        raise ProcessError(
            f"migrations exited with {result.returncode}; output:\n{log_tail(log_path, 30)}"
        )
