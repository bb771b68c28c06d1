"""Purge the large tenant through the gateway while its neighbours keep being served.

Neighbours' GETs run at a fixed rate from `before` seconds ahead of the purge to `after`
seconds past it; p95 of the requests sent during the purge is compared with p95 of those
sent before it (after is printed too). pg_stat_activity is sampled every 10 ms all along:
the longest transaction of the purge's connections (application_name gateway-lifecycle)
is the figure. Then the verification scan: the certificate's counts after, and a count of
the tenant's rows in every tenant table by the superuser, whom RLS does not filter.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import httpx
import psycopg2

from bench.lifecycle.figures import Figure
from bench.lifecycle.samplers import XactSampler
from bench.lifecycle.traffic import Readers, Tenant, p95_ms
from gateway import tenantdata

MAX_TRANSACTION_SECONDS = 1.0
MAX_P95_RATIO = 1.2
LIFECYCLE_APPLICATION = "gateway-lifecycle"
# gateway.lifecycle's line after a purge's deletes.
_LOGGED = re.compile(
    r"tenant (\d+): (\d+) rows deleted in (\d+) transactions, the longest ([\d.]+) s"
)


def _logged(log: Path | None, offset: int, tenant_id: int) -> str:
    """What the gateway logged of the purge's transactions (after `offset` in its log)."""
    if log is None:
        return "the gateway's log is not readable here"
    with log.open("rb") as lines:
        lines.seek(offset)
        written = lines.read().decode(errors="replace")
    for found in _LOGGED.finditer(written):
        if int(found.group(1)) == tenant_id:
            return f"the gateway's log: {found.group(3)} transactions, longest {found.group(4)} s"
    return "the gateway's log: no purge line found"


def _superuser_counts(owner_url: str, app_url: str, tenant_id: int) -> dict[str, int]:
    engine = tenantdata.make_app_engine(app_url)
    try:
        with engine.connect() as app, app.begin():
            names = [t.name for t in tenantdata.tables(app)]
    finally:
        engine.dispose()
    conn = psycopg2.connect(owner_url)
    try:
        with conn, conn.cursor() as cur:
            counts = {}
            for name in names:
                cur.execute(f"SELECT count(*) FROM {name} WHERE tenant_id = %s", (tenant_id,))
                counts[name] = int(cur.fetchone()[0])  # type: ignore[index]
            return counts
    finally:
        conn.close()


def purge_under_load(
    *,
    gateway_url: str,
    admin_token: str,
    owner_url: str,
    app_url: str,
    tenant: Tenant,
    neighbours: list[Tenant],
    rate: float,
    before: float,
    after: float,
    gateway_log: Path | None = None,
) -> list[Figure]:
    """Purge `tenant` now while `neighbours` get `rate` requests a second; the figures."""
    admin = httpx.Client(
        base_url=gateway_url,
        headers={"Authorization": f"Bearer {admin_token}"},
        timeout=httpx.Timeout(30, read=3600),
    )
    load = Readers(gateway_url, neighbours, rate=rate)
    with admin, XactSampler(owner_url) as xacts, load:
        time.sleep(before)
        log_offset = gateway_log.stat().st_size if gateway_log else 0
        started = time.monotonic()
        purged = admin.delete(f"/admin/tenants/{tenant.id}", params={"purge": "true"})
        ended = time.monotonic()
        time.sleep(after)
        if purged.status_code != 204:
            raise RuntimeError(f"purge answered {purged.status_code}: {purged.text[:200]}")
        cert = admin.get(f"/admin/tenants/{tenant.id}/deletion-certificate").json()
    failed = [a for a in load.answers if a.status != 200]
    if failed:
        first = failed[0].status
        raise RuntimeError(f"{len(failed)} neighbour requests failed, e.g. status {first}")
    windows = {
        "before": load.window(started - before, started),
        "during": load.window(started, ended),
        "after": load.window(ended, ended + after),
    }
    p95 = {name: p95_ms(answers) for name, answers in windows.items()}
    ratio = p95["during"] / p95["before"] if p95["before"] else 0.0
    # Before and after together, as make load-noisy's quiet phases: a drift of the machine's
    # other load over the run weighs on both sides (after also carries the autovacuum of the
    # purged rows). Printed beside; the target is on before, as the issue states it.
    around = p95_ms(windows["before"] + windows["after"])
    purge = xacts.of(LIFECYCLE_APPLICATION)
    longest = max((t.seconds for t in purge), default=0.0)
    # The advisory lock's transaction (the gateway's role) spans the whole purge, idle.
    locks = [t for t in xacts.seen.values() if any("advisory_xact_lock" in q for q in t.queries)]
    lock = max(locks, key=lambda t: t.seconds, default=None)
    after_cert = {name: counts["after"] for name, counts in cert["tables"].items()}
    scanned = _superuser_counts(owner_url, app_url, tenant.id)
    rows = sum(counts["before"] for counts in cert["tables"].values())
    seconds = ended - started
    return [
        Figure(
            "purge",
            f"{rows:,} rows in {seconds:.1f} s through the gateway ({rows / seconds:,.0f} rows/s)",
        ),
        Figure(
            "purge longest transaction",
            f"{longest:.3f} s, longest of {len(purge):,} transactions of its connections seen "
            f"(pg_stat_activity, {xacts.samples:,} samples 10 ms apart); "
            + _logged(gateway_log, log_offset, tenant.id),
            f"< {MAX_TRANSACTION_SECONDS:.0f} s",
            longest < MAX_TRANSACTION_SECONDS,
        ),
        Figure(
            "purge lock transaction",
            "not seen"
            if lock is None
            else f"advisory lock held {lock.seconds:.1f} s by an idle transaction that "
            f"{'HELD' if lock.held_xid_or_snapshot else 'held'} "
            f"{'an xid or a snapshot' if lock.held_xid_or_snapshot else 'no xid and no snapshot'}",
        ),
        Figure(
            "purge neighbours p95",
            f"{ratio:.2f}x: {p95['during']:.1f} ms during ({len(windows['during'])} requests) / "
            f"{p95['before']:.1f} ms before ({len(windows['before'])}); after "
            f"{p95['after']:.1f} ms ({len(windows['after'])}), during / before and after "
            f"{p95['during'] / around if around else 0.0:.2f}x; {rate:.0f} req/s over "
            f"{len(neighbours)} tenants",
            f"<= {MAX_P95_RATIO:.1f}x",
            0 < ratio <= MAX_P95_RATIO,
        ),
        Figure(
            "purge verification scan",
            f"certificate: {sum(after_cert.values())} rows after in {len(after_cert)} tenant "
            f"table(s); superuser count: {sum(scanned.values())} rows in {len(scanned)}",
            "0 rows",
            not any(after_cert.values()) and not any(scanned.values()),
        ),
    ]
