"""`make run` gives each database role its own generated password, and each process its role."""

from __future__ import annotations

import time
from pathlib import Path

import psycopg2
import pytest
from sqlalchemy.engine import make_url

from kit.datadir import ROLE_PASSWORDS, read_env_file
from kit.procs import child_env
from kit.servers import free_port
from tests.e2e.test_walkthrough import MakeRun, insert_tutorial_tenants, walk_through


def _activity(database_url: str) -> set[tuple[str, str]]:
    conn = psycopg2.connect(database_url)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(
                "SELECT DISTINCT application_name, usename::text FROM pg_stat_activity "
                "WHERE datname = current_database() AND application_name IN "
                "('gateway', 'users-service')"
            )
            return set(cur.fetchall())
    finally:
        conn.close()


def test_make_run_gives_every_role_its_own_password_and_no_process_the_superuser(
    kit_workdir: Path,
) -> None:
    gateway_port = free_port()
    data_dir = kit_workdir / "make-run-roles"
    env = child_env(
        {
            "KIT_DATA_DIR": str(data_dir),
            "GATEWAY_PORT": str(gateway_port),
            "USERS_PORT": str(free_port()),
            "GATEWAY_AUTH_MODES": "header",
        }
    )
    run = MakeRun(env)
    try:
        run.wait_for("tenantkit is ready", timeout=90)
        database_url = run.printed("export DATABASE_URL=")
        bootstrap = make_url(database_url)
        secrets_file = data_dir / "secrets.env"
        assert secrets_file.stat().st_mode & 0o077 == 0
        kept = read_env_file(secrets_file)
        passwords = [kept[name] for name in ROLE_PASSWORDS]
        assert len(set(passwords)) == 3
        assert bootstrap.password not in passwords

        roles = ("tenantkit_owner", "tenantkit_gateway", "tenantkit_app")
        for role, password in zip(roles, passwords, strict=True):
            url = bootstrap.set(username=role, password=password)
            conn = psycopg2.connect(url.render_as_string(hide_password=False))
            conn.close()
            # Nobody's password is the superuser's (issue 15: the services' role's was).
            shared = bootstrap.set(username=role)
            with pytest.raises(psycopg2.OperationalError, match="password authentication"):
                psycopg2.connect(shared.render_as_string(hide_password=False))

        insert_tutorial_tenants(database_url)
        walk_through(f"http://localhost:{gateway_port}")
        deadline = time.monotonic() + 5
        while len(seen := _activity(database_url)) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert seen == {("gateway", "tenantkit_gateway"), ("users-service", "tenantkit_app")}
        # Neither process was even given the superuser's or the owner's password.
        for child in run.descendants():
            try:
                environ = Path(f"/proc/{child.pid}/environ").read_bytes().decode(errors="replace")
            except OSError:
                continue
            if "gateway" in " ".join(child.cmdline()) or "services.users" in " ".join(
                child.cmdline()
            ):
                assert str(bootstrap.password) not in environ
                assert kept["OWNER_DB_PASSWORD"] not in environ
        assert run.terminate() == 0
    finally:
        run.close()
