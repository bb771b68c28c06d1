"""`make test-compose`: bring the compose stack up, run the suites against it, tear it down.

1. `docker compose up --build --wait` with the `scale` profile and tests/compose/compose.test.yml,
   under a project name and env file (fresh secrets) of its own, so a developer's `make up`
   stack is left alone;
2. the end-to-end suite (tests/e2e, through E2E_GATEWAY_URL, E2E_ADMIN_URL, E2E_ADMIN_TOKEN,
   E2E_DATABASE_URL,
   and E2E_REDIS_URL, E2E_JWT_SECRET for the gateways and tokens the tests make themselves);
3. the compose suite (tests/compose: images, replicas, PgBouncer);
4. `docker compose down --volumes`, whatever happened (KEEP_STACK=1 keeps it for debugging).
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from compose_stack import ENV_FILE, ENV_PROJECT, ROOT, ComposeStack, free_port  # noqa: E402

sys.path.insert(0, str(ROOT))
from services.tenancy.dburl import derive_role_url  # noqa: E402

UP_TIMEOUT_SECONDS = 1800
SUITE_TIMEOUT_SECONDS = 1800


def write_env_file(path: Path) -> None:
    """Fresh secrets and free host ports for this run's stack."""
    password = secrets.token_hex(24)
    # Each role's password as migrations derive it from the bootstrap URL alone: the e2e
    # fixtures derive the roles' URLs from E2E_DATABASE_URL (kit.testing) the same way.
    bootstrap = f"postgresql://tenantkit:{password}@postgres/tenantkit"
    derived = {
        name: str(derive_role_url(bootstrap, role=role).password)
        for name, role in (
            ("OWNER_DB_PASSWORD", "tenantkit_owner"),
            ("GATEWAY_DB_PASSWORD", "tenantkit_gateway"),
            ("APP_DB_PASSWORD", "tenantkit_app"),
        )
    }
    lines = {
        "POSTGRES_PASSWORD": password,
        **derived,
        "ADMIN_TOKEN": secrets.token_hex(32),
        "INTERNAL_SIGNING_SECRET": secrets.token_hex(32),
        "JWT_SECRET": secrets.token_hex(32),
        "REDIS_GATEWAY_PASSWORD": secrets.token_hex(24),
        "REDIS_SERVICES_PASSWORD": secrets.token_hex(24),
        "GATEWAY_PUBLISHED_PORT": str(free_port()),
        "GATEWAY_ADMIN_PUBLISHED_PORT": str(free_port()),
        "SCALE_PUBLISHED_PORT": str(free_port()),
        # A pool smaller than the clients the replicas open: the leak test needs contention.
        "PGBOUNCER_POOL_SIZE": "2",
        # The gateway the e2e fixtures promise (kit.testing): these modes on example.test,
        # and a limit that ordinary tests never meet.
        "GATEWAY_AUTH_MODES": "api_key,jwt,subdomain",
        "GATEWAY_BASE_DOMAIN": "example.test",
        "DEFAULT_RATE_LIMIT_PER_SECOND": "1000",
        # As kit.stacks gives its gateways: every test reaches the gateway from one address,
        # whose probes of revoked and random keys would otherwise refuse later tests' new
        # keys (429) whenever the suite runs faster than 5 such probes a second.
        "KEY_LOOKUPS_PER_CLIENT_PER_SECOND": "1000",
    }
    path.write_text("".join(f"{k}={v}\n" for k, v in lines.items()))


def pytest(args: list[str], env: dict[str, str]) -> int:
    print(f"\ntest-compose: pytest {' '.join(args)}", flush=True)
    return subprocess.call(
        [sys.executable, "-m", "pytest", *args],
        cwd=ROOT,
        env={**os.environ, **env},
        timeout=SUITE_TIMEOUT_SECONDS,
    )


def main() -> int:
    workdir = Path(tempfile.mkdtemp(prefix="tenantkit-compose-"))
    env_file = workdir / "compose.env"
    write_env_file(env_file)
    stack = ComposeStack(project=f"tenantkit-test-{os.getpid()}", env_file=env_file)
    started = time.monotonic()
    try:
        print(f"test-compose: building and starting project {stack.project}", flush=True)
        up = subprocess.call(
            stack.command("up", "-d", "--build", "--wait"), cwd=ROOT, timeout=UP_TIMEOUT_SECONDS
        )
        up_seconds = time.monotonic() - started
        if up != 0:
            subprocess.call(stack.command("ps", "--all"), cwd=ROOT)
            subprocess.call(stack.command("logs", "--tail", "60"), cwd=ROOT)
            print("test-compose: the stack did not become healthy", flush=True)
            return 1
        print(f"test-compose: stack healthy after {up_seconds:.0f} s", flush=True)
        settings = stack.settings
        e2e_env = {
            "E2E_GATEWAY_URL": stack.url("gateway", 8000),
            # The admin API is on the internal listener, as `make up` serves it.
            "E2E_ADMIN_URL": stack.url("gateway", 9000),
            "E2E_ADMIN_TOKEN": settings["ADMIN_TOKEN"],
            "E2E_DATABASE_URL": stack.owner_database_url(),
            # Gateways and tokens the e2e tests make themselves must match the stack's.
            "E2E_REDIS_URL": (
                f"redis://gateway:{settings['REDIS_GATEWAY_PASSWORD']}"
                f"@127.0.0.1:{stack.port('redis', 6379)}/0"
            ),
            "E2E_REDIS_SERVICES_URL": (
                f"redis://services:{settings['REDIS_SERVICES_PASSWORD']}"
                f"@127.0.0.1:{stack.port('redis', 6379)}/0"
            ),
            "E2E_JWT_SECRET": settings["JWT_SECRET"],
        }
        e2e = pytest(["tests/e2e"], e2e_env)
        compose = pytest(
            ["-c", "tests/compose/pytest.ini", "tests/compose"],
            {ENV_PROJECT: stack.project, ENV_FILE: str(env_file)},
        )
        failed = [name for name, rc in (("e2e", e2e), ("compose", compose)) if rc != 0]
        print(
            f"test-compose: {'FAILED: ' + ', '.join(failed) if failed else 'passed'} "
            f"in {time.monotonic() - started:.0f} s (stack up in {up_seconds:.0f} s)",
            flush=True,
        )
        return 1 if failed else 0
    finally:
        if os.environ.get("KEEP_STACK") == "1":
            print(f"test-compose: KEEP_STACK=1, left running: {' '.join(stack.command('ps'))}")
        else:
            subprocess.call(
                stack.command(
                    "down",
                    "--volumes",
                    "--remove-orphans",
                    "--timeout",
                    "10",
                    profiles=("scale", "loadtest"),
                ),
                cwd=ROOT,
                stdout=subprocess.DEVNULL,
                timeout=300,
            )


if __name__ == "__main__":
    sys.exit(main())
