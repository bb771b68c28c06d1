"""TENANT_DATABASES (SPEC §3, §11): parsed the same by every process, refused in one line,
and brought to head by `python -m migrations`, one line per database."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from kit.procs import ROOT, child_env
from kit.servers import PgServer
from kit.stacks import new_database
from services.tenancy.placements import parse_tenant_databases
from services.users.config import Settings

SECRET = "placement-tests-secret-0123456789"


def _migrate(env: dict[str, str | None]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "migrations"],
        env=child_env(env),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("eu", "is not NAME=postgresql://host:port/database"),
        ("EU=postgresql://h/d", "is not NAME=postgresql://host:port/database"),
        ("shared=postgresql://h/d", "shared is DATABASE_URL's database"),
        ("eu=postgresql://h/d,eu=postgresql://h/e", "placement eu is listed twice"),
        ("eu=mysql://h/d", "placement eu: not a PostgreSQL URL"),
        ("eu=postgresql://h", "placement eu: the URL names no database"),
    ],
)
def test_a_malformed_tenant_databases_stops_a_service_with_one_line_naming_it(
    raw: str, reason: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        Settings.load(
            {
                "DATABASE_URL": "postgresql://o@h/d",
                "INTERNAL_SIGNING_SECRET": SECRET,
                "TENANT_DATABASES": raw,
            }
        )
    assert exited.value.code == 2
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith("users-service: invalid setting TENANT_DATABASES: ")
    assert reason in line


def test_each_process_reaches_a_placement_as_its_own_role() -> None:
    settings = Settings.load(
        {
            "APP_DATABASE_URL": "postgresql://svc:s3cret@db:5432/tk",
            "INTERNAL_SIGNING_SECRET": SECRET,
            # A password written here is the bootstrap user's: it must reach no service.
            "TENANT_DATABASES": " big = postgresql://boot:root@db2:6543/tk_big , eu=postgresql://db3/tk_eu",
        }
    )
    urls = settings.placement_urls()
    assert list(urls) == ["shared", "big", "eu"]
    big = urls["big"]
    assert (big.username, big.password, big.host, big.port, big.database) == (
        "svc",
        "s3cret",
        "db2",
        6543,
        "tk_big",
    )
    assert urls["eu"].host == "db3" and urls["eu"].username == "svc"
    assert parse_tenant_databases("") == {} and parse_tenant_databases(None) == {}


def test_migrate_refuses_a_malformed_tenant_databases_in_one_line() -> None:
    result = _migrate({"DATABASE_URL": "postgresql://o@127.0.0.1:1/d", "TENANT_DATABASES": "x"})
    assert result.returncode != 0
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("migrate: invalid setting TENANT_DATABASES: ")


def test_migrate_brings_every_placement_to_head_and_reports_each(
    postgres_server: PgServer, kit_workdir: Path
) -> None:
    shared = new_database(postgres_server, log_dir=kit_workdir / "logs", name="placements_migrate")
    first = postgres_server.create_database("placements_migrate_a")
    postgres_server.create_database("placements_migrate_b")
    where = make_url(first)
    # One with credentials of its own (the superuser's), one with none (DATABASE_URL's are used).
    tenant_databases = f"a={first},b=postgresql://127.0.0.1:{where.port}/placements_migrate_b"
    env: dict[str, str | None] = {"DATABASE_URL": shared.url, "TENANT_DATABASES": tenant_databases}
    for _run in range(2):  # running it twice is harmless
        result = _migrate(env)
        assert result.returncode == 0, result.stdout + result.stderr
        lines = [line for line in result.stdout.splitlines() if ": at " in line]
        # One line each, in the order they finished.
        assert sorted(line.split(": at")[0] for line in lines) == [
            "migrate: placement a",
            "migrate: placement b",
            "migrate: placement shared",
        ]
        assert len({line.split(": at ")[1].split(" (")[0] for line in lines}) == 1  # one revision
