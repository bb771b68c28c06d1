"""`python -m migrations` with placements (issue 11): every database at once, each reported,
and one that fails fails alone."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import psycopg2
from alembic.config import Config
from alembic.script import ScriptDirectory

from kit.procs import ROOT, child_env
from kit.servers import PgServer
from kit.stacks import new_database

# The per-database advisory lock every migration run holds (migrations/upgrade.py).
DATABASE_LOCK = 7318006


def _head() -> str:
    config = Config(str(ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(ROOT / "migrations"))
    head = ScriptDirectory.from_config(config).get_current_head()
    assert head is not None
    return head


def _revision(url: str) -> str | None:
    conn = psycopg2.connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT to_regclass('alembic_version') IS NOT NULL")
            if not cur.fetchone()[0]:  # type: ignore[index]
                return None
            cur.execute("SELECT version_num FROM alembic_version")
            row = cur.fetchone()
            return None if row is None else str(row[0])
    finally:
        conn.close()


def _start(env: dict[str, str | None]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "migrations"],
        env=child_env(env),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _waiting_on_the_lock(server: PgServer) -> set[str]:
    """Databases in which some session waits for the migration lock right now."""
    conn = server.connect()
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT d.datname FROM pg_locks l JOIN pg_database d ON d.oid = l.database "
                "WHERE l.locktype = 'advisory' AND l.classid = 0 AND l.objid = %s "
                "AND NOT l.granted",
                (DATABASE_LOCK,),
            )
            return {str(row[0]) for row in cur.fetchall()}
    finally:
        conn.close()


def test_placements_migrate_at_the_same_time_each_in_its_own_process(
    postgres_server: PgServer, kit_workdir: Path
) -> None:
    shared = new_database(postgres_server, log_dir=kit_workdir / "logs", name="parallel_shared")
    urls = {n: postgres_server.create_database(f"parallel_{n}") for n in ("a", "b")}
    # Hold each placement's migration lock, as a second migrate job would: a run that takes
    # the placements in turn blocks on `a` and never reaches `b`; one that runs them at once
    # has a session waiting in both.
    holders = [psycopg2.connect(url) for url in urls.values()]
    job: subprocess.Popen[str] | None = None
    try:
        for holder in holders:
            holder.autocommit = True
            with holder.cursor() as cur:
                cur.execute("SELECT pg_advisory_lock(%s)", (DATABASE_LOCK,))
        job = _start(
            {
                "DATABASE_URL": shared.url,
                "TENANT_DATABASES": ",".join(f"{n}={u}" for n, u in urls.items()),
            }
        )
        waiting: set[str] = set()
        deadline = time.monotonic() + 90
        while waiting != {"parallel_a", "parallel_b"}:
            assert job.poll() is None, job.communicate()
            assert time.monotonic() < deadline, f"only {waiting or 'none'} waited at once"
            time.sleep(0.1)
            waiting = _waiting_on_the_lock(postgres_server)
    except BaseException:
        if job is not None:
            job.kill()
            job.communicate()
        raise
    finally:
        for holder in holders:
            holder.close()  # releases the locks: the waiting runs go on
    out, err = job.communicate(timeout=120)
    assert job.returncode == 0, out + err
    lines = sorted(line for line in out.splitlines() if ": at " in line)
    head = _head()
    assert [line.split(" (")[0] for line in lines] == [
        f"migrate: placement a: at {head}",
        f"migrate: placement b: at {head}",
        f"migrate: placement shared: at {head}",
    ]
    assert all(_revision(url) == head for url in urls.values())


def test_a_broken_placement_fails_alone_and_is_named(
    postgres_server: PgServer, kit_workdir: Path
) -> None:
    shared = new_database(postgres_server, log_dir=kit_workdir / "logs", name="broken_shared")
    good = postgres_server.create_database("broken_good")
    port = postgres_server.port
    tenant_databases = ",".join(
        [
            f"good={good}",
            # No server listens there: its server's roles cannot be made.
            "gone=postgresql://127.0.0.1:1/x",
            # The server is there (shared's), the database is not.
            f"missing=postgresql://127.0.0.1:{port}/no_such_database",
        ]
    )
    job = _start({"DATABASE_URL": shared.url, "TENANT_DATABASES": tenant_databases})
    out, err = job.communicate(timeout=180)
    assert job.returncode == 1, out + err
    head = _head()
    assert _revision(good) == head
    assert sorted(line.split(" (")[0] for line in out.splitlines() if ": at " in line) == [
        f"migrate: placement good: at {head}",
        f"migrate: placement shared: at {head}",
    ]
    errors = err.strip().splitlines()
    assert any(line.startswith("migrate: placement gone: cannot connect: ") for line in errors)
    assert any(
        line.startswith("migrate: placement missing: cannot connect: ")
        and "no_such_database" in line
        for line in errors
    ), err
    assert errors[-1].startswith("migrate: failed: ")
    assert sorted(errors[-1].removeprefix("migrate: failed: ").split(", ")) == ["gone", "missing"]


def test_two_migrate_jobs_with_placements_at_once_both_succeed(
    postgres_server: PgServer, kit_workdir: Path
) -> None:
    # Compose replicas or two CI jobs: the roles of one server and each database are taken
    # by one job at a time (their advisory locks); neither fails on the other's catalog rows.
    shared = postgres_server.create_database("twojobs_shared")
    urls = {n: postgres_server.create_database(f"twojobs_{n}") for n in ("a", "b")}
    env: dict[str, str | None] = {
        "DATABASE_URL": shared,
        "TENANT_DATABASES": ",".join(f"{n}={u}" for n, u in urls.items()),
    }
    jobs = [_start(env) for _ in range(2)]
    outputs = [job.communicate(timeout=180) for job in jobs]
    assert [job.returncode for job in jobs] == [0, 0], outputs
    head = _head()
    assert all(_revision(url) == head for url in [shared, *urls.values()])
