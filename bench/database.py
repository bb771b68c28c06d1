"""Tenant-scoped reads in PostgreSQL: 10 vs 10,000 tenants, RLS in force vs not, SET LOCAL."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg2
from sqlalchemy import Engine, create_engine, select
from sqlalchemy.orm import Session

from bench.dataset import Picker
from bench.measure import Sample, figures, interleaved, ratio_line
from bench.settings import Scale
from services.tenancy.dburl import derive_app_url, plain, to_psycopg2
from services.tenancy.session import (
    install_engine_hooks,
    install_orm_wall,
    install_tenant_setting_separately,
    open_tenant_session,
    tenant_setting_sql,
)
from services.users.models import User

PAGE = 20
# One operation = what the users service does for GET /users/{id} then GET /users?limit=20.
_GET = "SELECT id, tenant_id, name, email FROM users WHERE tenant_id = %s AND id = %s"
_PAGE = (
    f"SELECT id, tenant_id, name, email FROM users WHERE tenant_id = %s ORDER BY id LIMIT {PAGE}"
)

Operation = Callable[[Any, Picker], None]


def run_threads(
    connect: Callable[[], Any] | None,
    operation: Operation,
    *,
    picker_args: dict[str, int],
    count: int,
    concurrency: int,
) -> Sample:
    """`count` operations from `concurrency` threads, each with its own connection (if any).

    psycopg2 releases the GIL while it waits for PostgreSQL, so threads overlap the waits.
    """
    counter = itertools.count()
    latencies: list[float] = []
    lock = threading.Lock()
    connections = [connect() if connect else None for _ in range(concurrency)]

    def worker(conn: Any, seed: int) -> None:
        picker = Picker(**picker_args, seed=seed)
        mine = []
        while next(counter) < count:
            started = time.perf_counter()
            operation(conn, picker)
            mine.append(time.perf_counter() - started)
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=worker, args=(c, n)) for n, c in enumerate(connections)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    for conn in connections:
        if conn is not None:
            conn.close()
    if len(latencies) != count:
        raise RuntimeError(f"{count - len(latencies)} bench operations failed")
    return Sample(operations=count, concurrency=concurrency, seconds=elapsed, latencies=latencies)


def tenant_read(conn: Any, picker: Picker) -> None:
    """One user by id and the first page, in one transaction, tenant set in the first trip."""
    tenant, user_id = picker.pick()
    with conn, conn.cursor() as cur:
        cur.execute(f"{tenant_setting_sql(tenant)}; {_GET}", (tenant, user_id))
        if cur.fetchone() is None:
            raise RuntimeError(f"user {user_id} of tenant {tenant} not visible")
        cur.execute(_PAGE, (tenant,))
        if len(cur.fetchall()) == 0:
            raise RuntimeError(f"tenant {tenant} has no visible users")


def _app_connect(owner_url: str) -> Callable[[], Any]:
    app_url = plain(derive_app_url(owner_url))
    return lambda: psycopg2.connect(app_url, application_name="bench")


def _reads(owner_url: str, *, tenants: int, scale: Scale) -> Callable[[], Sample]:
    return lambda: run_threads(
        _app_connect(owner_url),
        tenant_read,
        picker_args={"tenants": tenants, "users": scale.db_users},
        count=scale.db_queries,
        concurrency=scale.db_concurrency,
    )


def compare_tenant_counts(few_url: str, many_url: str, *, scale: Scale) -> str:
    """The same reads on the same number of users, owned by few or by many tenants."""
    few = f"{scale.few_tenants} tenants"
    many = f"{scale.many_tenants:,} tenants"
    runs = {
        many: _reads(many_url, tenants=scale.many_tenants, scale=scale),
        few: _reads(few_url, tenants=scale.few_tenants, scale=scale),
    }
    samples = interleaved(runs, rounds=scale.db_rounds)
    return ratio_line(
        f"reads with {many} vs {few} ({scale.db_users:,} users in each database)",
        figures(many, samples[many]),
        figures(few, samples[few]),
        unit="reads",
    )


@contextmanager
def rls_disabled(owner_url: str) -> Iterator[None]:
    """Row-level security off on `users` for the duration (bench database only)."""
    conn = psycopg2.connect(owner_url, application_name="bench")
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute("ALTER TABLE users DISABLE ROW LEVEL SECURITY")
        yield
    finally:
        with conn.cursor() as cur:
            cur.execute("ALTER TABLE users ENABLE ROW LEVEL SECURITY")
        conn.close()


def compare_rls(owner_url: str, *, tenants: int, scale: Scale) -> str:
    """The same role, the same SQL (tenant filter included); only the policy differs."""
    reads = _reads(owner_url, tenants=tenants, scale=scale)

    def without_rls() -> Sample:
        with rls_disabled(owner_url):
            return reads()

    runs = {"RLS in force": reads, "RLS off": without_rls}
    samples = interleaved(runs, rounds=scale.db_rounds)
    return ratio_line(
        f"reads with row-level security in force vs off ({tenants:,} tenants)",
        figures("RLS in force", samples["RLS in force"]),
        figures("RLS off", samples["RLS off"]),
        unit="reads",
    )


class SeparateSettingSession(Session):
    """The naive tenant session: `SET LOCAL` in a round trip of its own."""


def _prepare_separate_session() -> None:
    if not getattr(SeparateSettingSession, "_bench_installed", False):
        install_tenant_setting_separately(SeparateSettingSession)
        install_orm_wall(SeparateSettingSession)
        SeparateSettingSession._bench_installed = True  # type: ignore[attr-defined]


def _orm_reads(
    engine: Engine, *, separate: bool, tenants: int, scale: Scale
) -> Callable[[], Sample]:
    def read(_conn: Any, picker: Picker) -> None:
        tenant, user_id = picker.pick()
        if separate:
            session: Session = SeparateSettingSession(bind=engine, expire_on_commit=False)
            session.info["tenant_id"] = tenant
        else:
            session = open_tenant_session(engine, tenant_id=tenant)
        with session, session.begin():
            session.execute(select(User).where(User.id == user_id)).scalar_one()

    # No connection per thread: the sessions check pooled ones out of the engine.
    return lambda: run_threads(
        None,
        read,
        picker_args={"tenants": tenants, "users": scale.db_users},
        count=scale.db_queries,
        concurrency=scale.db_concurrency,
    )


def compare_set_local(owner_url: str, *, tenants: int, scale: Scale) -> str:
    """The users service's session: tenant set inside the first statement vs on its own."""
    _prepare_separate_session()
    engine = create_engine(
        to_psycopg2(derive_app_url(owner_url), application_name="bench"),
        pool_size=scale.db_concurrency,
        max_overflow=0,
    )
    install_engine_hooks(engine)
    try:
        runs = {
            "own round trip": _orm_reads(engine, separate=True, tenants=tenants, scale=scale),
            "same round trip": _orm_reads(engine, separate=False, tenants=tenants, scale=scale),
        }
        samples = interleaved(runs, rounds=scale.db_rounds)
    finally:
        engine.dispose()
    return ratio_line(
        "SET LOCAL in its own round trip vs in the first statement's (ORM session, get by id)",
        figures("own round trip", samples["own round trip"]),
        figures("same round trip", samples["same round trip"]),
        unit="reads",
    )
