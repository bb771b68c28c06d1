"""tenantkit's full path (gateway, key, rate limit, signature, RLS) against the tutorial app.

Same PostgreSQL server, one database each, one tenant with 50 users on each side, the same
two reads: get by id and a list of 50. Issue 10's target: the full path at least as fast.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg2
from sqlalchemy import create_engine

from bench import tutorial_app
from bench.generator import Load, run_load
from bench.measure import Comparison, Sample, Target, figures, interleaved
from bench.settings import Scale
from kit.children import wait_until
from kit.procs import http_status, start_service
from kit.servers import PgServer

FULL_PATH_TARGET = Target("throughput", at_least=True, value=1.0)
USERS_PER_TENANT = 50


def _prepare_database(server: PgServer) -> tuple[str, list[int]]:
    """The tutorial's tables in a database of their own, two tenants of 50 users; tenant 1's ids."""
    url = server.create_database("tutorial_bench")
    # SQLAlchemy 2.1 defaults to psycopg 3; the article installs and uses psycopg2.
    engine = create_engine(_psycopg2(url))
    try:
        # From scratch each time: the same database may serve several runs (the suite's).
        tutorial_app.Base.metadata.drop_all(engine)
        tutorial_app.Base.metadata.create_all(engine)
    finally:
        engine.dispose()
    conn = psycopg2.connect(url, application_name="bench")
    try:
        with conn, conn.cursor() as cur:
            # Step 6 of the article, then its users, interleaved as sign-ups come.
            cur.execute("INSERT INTO tenants (name) VALUES ('Tenant A'), ('Tenant B')")
            cur.execute(
                "INSERT INTO users (name, tenant_id) "
                "SELECT 'User ' || g, 1 + g %% 2 FROM generate_series(0, %s) g",
                (2 * USERS_PER_TENANT - 1,),
            )
            cur.execute("SELECT id FROM users WHERE tenant_id = 1 ORDER BY id")
            ids = [row[0] for row in cur.fetchall()]
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("VACUUM ANALYZE")
    finally:
        conn.close()
    return url, ids


def _psycopg2(url: str) -> str:
    return url.replace("postgresql://", "postgresql+psycopg2://", 1)


@contextmanager
def tutorial_server(server: PgServer, *, log_dir: Path) -> Iterator[tuple[str, list[int]]]:
    """The tutorial app running on its own database: its URL and tenant 1's user ids."""
    url, ids = _prepare_database(server)
    process = start_service(
        "tutorial",
        env={"TUTORIAL_DATABASE_URL": _psycopg2(url)},
        argv=[sys.executable, "-m", "bench.tutorial_app"],
        log_dir=log_dir,
        ready_path=None,
    )
    try:
        # It has no health route: any answer (400 without the header) means it listens.
        if not wait_until(
            lambda: http_status(f"{process.url}/users/") == 400, timeout=30, child=process.child
        ):
            raise RuntimeError(f"tutorial app did not start:\n{process.tail()}")
        yield process.url, ids
    finally:
        process.stop()


def compare_with_tutorial(
    *,
    gateway_url: str,
    api_key: str,
    user_ids: list[int],
    tutorial_url: str,
    tutorial_ids: list[int],
    scale: Scale,
) -> list[Comparison]:
    """Get by id and list 50, full path vs tutorial, interleaved rounds of each."""
    c = scale.tutorial_concurrency
    key = {"Authorization": f"Bearer {api_key}"}
    tenant = {"X-Tenant-ID": "1"}
    reads = {
        "get by id": (
            Load(gateway_url, [f"/users/{i}" for i in user_ids], key, c),
            Load(tutorial_url, [f"/users/{i}" for i in tutorial_ids], tenant, c),
        ),
        # The tutorial's list has no limit: its tenant holds exactly 50 users.
        "list 50": (
            Load(gateway_url, ["/users?limit=50"], key, c),
            Load(tutorial_url, ["/users/"], tenant, c),
        ),
    }

    def run(load: Load) -> Callable[[], Sample]:
        return lambda: run_load(load, seconds=scale.tutorial_seconds, requests=scale.http_requests)

    comparisons = []
    for read, (full, tutorial) in reads.items():
        samples = interleaved(
            {"full path": run(full), "tutorial app": run(tutorial)}, rounds=scale.http_rounds
        )
        comparisons.append(
            Comparison(
                f"full path vs tutorial app ({read})",
                figures("full path", samples["full path"]),
                figures("tutorial app", samples["tutorial app"]),
                target=FULL_PATH_TARGET,
            )
        )
    return comparisons
