"""What the moves must not change, read by the superuser (whom RLS does not filter).

- Per table, the count and an ordered hash of the moving tenant's rows that existed before
  the load (ids up to the largest then): the load only writes users it created itself, so
  these rows must read the same before, after moving out and after moving back.
- Every tenant's rows against its ledger once the load has stopped: each acknowledged write
  exactly once, in the tenant's placement, and none of the tenant's rows anywhere else.
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg2

from bench.movelive.load import Ledger
from gateway.movedata import data_tables
from gateway.tenantdata import Table, make_app_engine, quote

# (rows, SHA-256 over the rows' MD5s in id order), per table.
Hashes = dict[str, tuple[int, str]]


@dataclass(frozen=True, slots=True)
class Base:
    """The moving tenant's rows before the load wrote any: the largest id per table."""

    tables: list[Table]
    max_ids: dict[str, int]


def tenant_tables(app_url: str) -> list[Table]:
    engine = make_app_engine(app_url)
    try:
        return data_tables(engine)
    finally:
        engine.dispose()


def _scalar_rows(url: str, sql: str, params: dict[str, object]) -> list[tuple[object, ...]]:
    conn = psycopg2.connect(url, application_name="load-move-check")
    try:
        with conn, conn.cursor() as cur:
            cur.execute(sql, params)
            return [tuple(r) for r in cur.fetchall()]
    finally:
        conn.close()


def base(url: str, tables: list[Table], tenant_id: int) -> Base:
    max_ids = {}
    for table in tables:
        ((top,),) = _scalar_rows(
            url,
            f"SELECT coalesce(max(id), 0) FROM {table.name} WHERE tenant_id = %(t)s",
            {"t": tenant_id},
        )
        max_ids[table.name] = int(top)  # type: ignore[call-overload]
    return Base(tables, max_ids)


def hashes(url: str, found: Base, tenant_id: int) -> Hashes:
    """The base rows' count and ordered hash per table in the database at `url`."""
    result: Hashes = {}
    for table in found.tables:
        cols = ", ".join(quote(c) for c in table.columns)
        ((count, digest),) = _scalar_rows(
            url,
            f"SELECT count(*), encode(sha256(convert_to(coalesce(string_agg("
            f"md5(row({cols})::text), '' ORDER BY id), ''), 'UTF8')), 'hex') "
            f"FROM {table.name} WHERE tenant_id = %(t)s AND id <= %(top)s",
            {"t": tenant_id, "top": found.max_ids[table.name]},
        )
        result[table.name] = (int(count), str(digest))  # type: ignore[call-overload]
    return result


def count(url: str, tables: list[Table], tenant_id: int) -> int:
    """All the tenant's rows in the database at `url`, every table."""
    return sum(
        int(
            _scalar_rows(
                url, f"SELECT count(*) FROM {t.name} WHERE tenant_id = %(t)s", {"t": tenant_id}
            )[0][0]
        )  # type: ignore[call-overload]
        for t in tables
    )


@dataclass(slots=True)
class WriteCheck:
    """One tenant's stored users against its ledger."""

    acknowledged: int = 0  # writes
    expected: int = 0  # rows the ledger says exist
    missing: list[int] | None = None  # acknowledged ids not stored (or with another name)
    extra: list[int] | None = None  # stored ids no acknowledged write explains
    elsewhere: int = 0  # the tenant's rows in the placement it is not in
    unsure: int = 0  # rows of writes that got no clear answer (either outcome accepted)

    @property
    def ok(self) -> bool:
        return not self.missing and not self.extra and not self.elsewhere


def check_writes(
    home_url: str, other_url: str, tenant_id: int, ledger: Ledger, first_id: int
) -> WriteCheck:
    """Users with ids above `first_id - 1` (the ones the load made) against the ledger."""
    stored = {
        int(i): str(n)  # type: ignore[call-overload]
        for i, n in _scalar_rows(
            home_url,
            "SELECT id, name FROM users WHERE tenant_id = %(t)s AND id >= %(first)s",
            {"t": tenant_id, "first": first_id},
        )
    }
    missing = [
        i for i, name in ledger.rows.items() if i not in ledger.unsure_ids and stored.get(i) != name
    ]
    extra = [
        i
        for i, name in stored.items()
        if i not in ledger.rows and i not in ledger.unsure_ids and name not in ledger.unsure_names
    ]
    unsure = sum(1 for i, n in stored.items() if i in ledger.unsure_ids or n in ledger.unsure_names)
    ((elsewhere,),) = _scalar_rows(
        other_url, "SELECT count(*) FROM users WHERE tenant_id = %(t)s", {"t": tenant_id}
    )
    return WriteCheck(
        acknowledged=ledger.acknowledged,
        expected=len(ledger.rows),
        missing=sorted(missing),
        extra=sorted(extra),
        elsewhere=int(elsewhere),  # type: ignore[call-overload]
        unsure=unsure,
    )
