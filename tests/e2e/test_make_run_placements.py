"""`make run` with KIT_PLACEMENTS: it creates, migrates and routes to its own placements."""

from __future__ import annotations

from pathlib import Path

import httpx
import psycopg2
from makerun import MakeRun
from sqlalchemy.engine import make_url

from kit.procs import child_env
from kit.servers import free_port


def test_make_run_creates_its_placements_and_places_tenants_there(kit_workdir: Path) -> None:
    gateway_port = free_port()
    env = child_env(
        {
            "KIT_DATA_DIR": str(kit_workdir / "make-run-placements"),
            "GATEWAY_PORT": str(gateway_port),
            "USERS_PORT": str(free_port()),
            "KIT_PLACEMENTS": "dedicated",
        }
    )
    run = MakeRun(env)
    try:
        run.wait_for("tenantkit is ready", timeout=90)
        assert run.printed("placements:") == "shared, dedicated"
        database_url = run.printed("export DATABASE_URL=")
        admin = {"Authorization": f"Bearer {run.printed('admin token:')}"}
        base = f"http://127.0.0.1:{gateway_port}"
        made = httpx.post(
            f"{base}/admin/tenants", headers=admin, json={"name": "Big", "placement": "dedicated"}
        )
        assert made.status_code == 201, made.text
        key = {"Authorization": f"Bearer {made.json()['api_key']}"}
        assert httpx.post(f"{base}/users", headers=key, json={"name": "Ann"}).status_code == 201
        dedicated = make_url(database_url).set(database="tenantkit_dedicated")
        conn = psycopg2.connect(dedicated.render_as_string(hide_password=False))
        try:
            with conn, conn.cursor() as cur:
                cur.execute("SELECT name FROM users")
                assert cur.fetchall() == [("Ann",)]
        finally:
            conn.close()
    finally:
        run.close()


def test_make_run_refuses_a_malformed_placement_setting_in_one_line(kit_workdir: Path) -> None:
    env = child_env(
        {
            "KIT_DATA_DIR": str(kit_workdir / "make-run-bad-placements"),
            "TENANT_DATABASES": "eu",
        }
    )
    run = MakeRun(env)
    assert run.popen.wait(timeout=60) != 0
    run.close()
    assert run.lines[-1].startswith("kit: invalid setting TENANT_DATABASES: ")
