"""Tenant-scoped reads in PostgreSQL: 10 vs 10,000 tenants, RLS in force vs not, SET LOCAL."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import psycopg2
from sqlalchemy import Engine, create_engine, select
from sqlalchemy.orm import Session

from bench.dataset import Picker
from bench.measure import Comparison, Sample, Target, figures, interleaved
from bench.pgbench import TENANT_READ, Pgbench
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


def check_visibility(owner_url: str, *, tenants: int, users: int) -> None:
    """Before timing anything: the restricted role sees a tenant's row under RLS, and only
    with the tenant set (a bench of reads that find nothing would flatter everyone)."""
    tenant, user_id = Picker(tenants=tenants, users=users).pick()
    conn = psycopg2.connect(plain(derive_app_url(owner_url)), application_name="bench")
    try:
        query = "SELECT count(*) FROM users WHERE tenant_id = %s AND id = %s"
        with conn, conn.cursor() as cur:
            cur.execute(query, (tenant, user_id))
            unset = cur.fetchone()
        with conn, conn.cursor() as cur:
            cur.execute(f"{tenant_setting_sql(tenant)}; {query}", (tenant, user_id))
            visible = cur.fetchone()
    finally:
        conn.close()
    if unset != (0,) or visible != (1,):
        raise RuntimeError(f"bench data wrong: without tenant {unset}, with tenant {visible}")


def _pgbench_reads(
    pgbench: Pgbench, owner_url: str, *, tenants: int, scale: Scale
) -> Callable[[], Sample]:
    app_url = plain(derive_app_url(owner_url))
    return lambda: pgbench.run(
        app_url,
        script=TENANT_READ,
        variables={"tenants": tenants, "per_tenant": scale.db_users // tenants},
        clients=scale.db_clients,
        transactions=scale.db_transactions,
    )


# Issue 10's targets: tenant count and RLS cost at most 10 % and 15 % of a read's median.
TENANT_COUNT_TARGET = Target("p50", at_least=False, value=1.10)
RLS_TARGET = Target("p50", at_least=False, value=1.15)


def compare_tenant_counts(
    pgbench: Pgbench, few_url: str, many_url: str, *, scale: Scale
) -> Comparison:
    """The same reads on the same number of users, owned by few or by many tenants."""
    few = f"{scale.few_tenants} tenants"
    many = f"{scale.many_tenants:,} tenants"
    runs = {
        many: _pgbench_reads(pgbench, many_url, tenants=scale.many_tenants, scale=scale),
        few: _pgbench_reads(pgbench, few_url, tenants=scale.few_tenants, scale=scale),
    }
    samples = interleaved(runs, rounds=scale.db_rounds)
    return Comparison(
        f"reads with {many} vs {few} ({scale.db_users:,} users in each database)",
        figures(many, samples[many]),
        figures(few, samples[few]),
        unit="reads",
        target=TENANT_COUNT_TARGET,
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


def compare_rls(pgbench: Pgbench, owner_url: str, *, tenants: int, scale: Scale) -> Comparison:
    """The same role, the same SQL (tenant filter included); only the policy differs."""
    reads = _pgbench_reads(pgbench, owner_url, tenants=tenants, scale=scale)

    def without_rls() -> Sample:
        with rls_disabled(owner_url):
            return reads()

    runs = {"RLS in force": reads, "RLS off": without_rls}
    samples = interleaved(runs, rounds=scale.db_rounds)
    return Comparison(
        f"reads with row-level security in force vs off ({tenants:,} tenants)",
        figures("RLS in force", samples["RLS in force"]),
        figures("RLS off", samples["RLS off"]),
        unit="reads",
        target=RLS_TARGET,
    )


class SeparateSettingSession(Session):
    """The naive tenant session: `SET LOCAL` in a round trip of its own."""


def _prepare_separate_session() -> None:
    # Listeners are per class: install them once however often the bench runs in-process.
    if not getattr(SeparateSettingSession, "_bench_installed", False):
        install_tenant_setting_separately(SeparateSettingSession)
        install_orm_wall(SeparateSettingSession)
        SeparateSettingSession._bench_installed = True  # type: ignore[attr-defined]


def _orm_reads(
    engine: Engine, *, separate: bool, tenants: int, scale: Scale
) -> Callable[[], Sample]:
    picker = Picker(tenants=tenants, users=scale.db_users)

    def read() -> None:
        tenant, user_id = picker.pick()
        session: Session
        if separate:
            session = SeparateSettingSession(bind=engine, expire_on_commit=False)
            session.info["tenant_id"] = tenant
        else:
            session = open_tenant_session(engine, tenant_id=tenant)
        with session, session.begin():
            session.execute(select(User).where(User.id == user_id)).scalar_one()

    def run() -> Sample:
        latencies = []
        started = time.perf_counter()
        for _ in range(scale.orm_reads):
            began = time.perf_counter()
            read()
            latencies.append(time.perf_counter() - began)
        elapsed = time.perf_counter() - started
        return Sample(
            operations=scale.orm_reads, concurrency=1, seconds=elapsed, latencies=latencies
        )

    return run


def compare_set_local(owner_url: str, *, tenants: int, scale: Scale) -> Comparison:
    """The users service's session: tenant set inside the first statement vs on its own.

    One transaction at a time: what is compared is a round trip per request, which
    concurrency on 2 cores would bury under CPU contention.
    """
    _prepare_separate_session()
    engine = create_engine(
        to_psycopg2(derive_app_url(owner_url), application_name="bench"), pool_size=1
    )
    install_engine_hooks(engine)
    try:
        runs = {
            "own round trip": _orm_reads(engine, separate=True, tenants=tenants, scale=scale),
            "same round trip": _orm_reads(engine, separate=False, tenants=tenants, scale=scale),
        }
        samples = interleaved(runs, rounds=scale.orm_rounds)
    finally:
        engine.dispose()
    return Comparison(
        "SET LOCAL in its own round trip vs in the first statement's (ORM session, get by id)",
        figures("own round trip", samples["own round trip"]),
        figures("same round trip", samples["same round trip"]),
        unit="reads",
    )
