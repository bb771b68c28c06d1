"""Verifying a moved tenant chunk by chunk, so the cut-over re-checks only what changed.

Before the cut-over, while the source still serves the tenant, both sides are hashed in
chunks of CHUNK_IDS ids (row count and a SHA-256 over the rows' MD5s in id order, computed
by PostgreSQL). A chunk whose two hashes agree is proven, and stays proven until one of its
rows changes. Why no change can slip past:

- every write to the source's rows logs the row's id (the capture trigger, in the writer's
  own transaction), and the only writes to the target are the mover's replays of those log
  entries (it is frozen for everyone else);
- the mover takes the log (movedata.catch_up) in the same thread that hashes, never during a
  hashing. A write that commits after a chunk's source snapshot is not in that snapshot, and
  its log entry becomes visible only after that snapshot too, so a take that comes after the
  hashing returns it (or it is still in the log when the cut-over drains it, after waiting
  out every older transaction). Every take's ids mark their chunks dirty again;
- a chunk hashed while a change to it was still waiting in the log is dirty as soon as that
  change is taken, so it is re-hashed whether or not the hashes happened to agree.

Inside the cut-over (source frozen, log drained) only the dirty chunks are hashed again,
and every table's row count; each side's per-table digest over all its chunk hashes, in
chunk order, and its count must agree with the other's, and each count must equal the sum
of its chunks' counts (no row lies outside a hashed chunk). That proves every row equal,
at a cost that grows with the writes made during the verification, not with the tenant.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from sqlalchemy import Connection, Engine, text

from gateway.movedata import MoveError, Taken
from gateway.tenantdata import Table, enter_tenant, quote

# Ids per chunk: re-hashing a dirty one in the cut-over takes about 2 ms (4 us a row on
# the development VM); a million-row tenant has 2,000 of them.
CHUNK_IDS = 500
# Chunks per hashing statement before the cut-over (100,000 ids: a range scan, ~0.4 s).
CHUNKS_PER_STATEMENT = 200
# Re-hash the dirty chunks until this few are left (or RECHECK_ROUNDS ran): the cut-over
# then re-hashes about that many.
SETTLED_CHUNKS = 20
RECHECK_ROUNDS = 10

Hashes = dict[int, tuple[int, str]]  # chunk -> (rows, digest); empty chunks left out


def chunk_of(row_id: int) -> int:
    """The chunk holding this id (floor division, like hash_chunks' SQL)."""
    return row_id // CHUNK_IDS


@dataclass
class Chunks:
    """What the verification knows: per table, the chunks proven equal; those to re-check."""

    proven: dict[str, Hashes] = field(default_factory=dict)
    dirty: dict[str, set[int]] = field(default_factory=dict)

    def touched(self, taken: Taken) -> None:
        """Rows changed (a take of the log): their chunks are no longer proven."""
        for name, ids in taken.items():
            self.dirty.setdefault(name, set()).update(chunk_of(i) for i in ids)

    def dirty_count(self) -> int:
        return sum(len(ks) for ks in self.dirty.values())

    def settle(self, table: str, source: Hashes, target: Hashes) -> None:
        """Record the chunks just hashed on both sides: proven if equal, dirty if not."""
        proven, dirty = self.proven.setdefault(table, {}), self.dirty.setdefault(table, set())
        for k in source.keys() | target.keys():
            if source.get(k) == target.get(k):
                dirty.discard(k)
                proven.pop(k, None)
                if k in source:
                    proven[k] = source[k]
            else:
                dirty.add(k)
                proven.pop(k, None)


def _runs(ks: list[int]) -> list[tuple[int, int]]:
    """Sorted chunk numbers as runs of consecutive ones: (first, last)."""
    runs: list[tuple[int, int]] = []
    for k in ks:
        if runs and runs[-1][1] == k - 1:
            runs[-1] = (runs[-1][0], k)
        else:
            runs.append((k, k))
    return runs


def hash_chunks(conn: Connection, table: Table, tenant_id: int, ks: Iterable[int]) -> Hashes:
    """These chunks' hashes in `table` (the tenant entered in `conn`), empty ones left out.

    Id ranges as plain bounds, one per run of chunks: each is an index range scan (a
    LATERAL join on a chunk list made PostgreSQL scan the whole table once per chunk).
    """
    wanted = sorted(set(ks))
    if not wanted:
        return {}
    runs = _runs(wanted)
    ranges = " OR ".join(f"(r.id >= :lo{i} AND r.id < :hi{i})" for i in range(len(runs)))
    bounds: dict[str, int] = {"t": tenant_id}
    for i, (first, last) in enumerate(runs):
        bounds[f"lo{i}"], bounds[f"hi{i}"] = first * CHUNK_IDS, (last + 1) * CHUNK_IDS
    rows = ", ".join(f"r.{quote(c)}" for c in table.columns)
    found = conn.execute(
        text(
            # floor: chunk k is ids [k * CHUNK_IDS, (k + 1) * CHUNK_IDS), as chunk_of says,
            # negative ids included (integer division would truncate towards zero).
            f"SELECT CAST(floor(r.id / {CHUNK_IDS}.0) AS bigint), count(*), "
            "encode(sha256(convert_to(string_agg("
            f"md5(row({rows})::text), '' ORDER BY r.id), 'UTF8')), 'hex') "
            f"FROM {table.name} r WHERE r.tenant_id = :t AND ({ranges}) GROUP BY 1"
        ),
        bounds,
    ).all()
    return {int(k): (int(n), str(d)) for k, n, d in found}


def _hash(engine: Engine, table: Table, tenant_id: int, ks: Iterable[int]) -> Hashes:
    with engine.connect() as conn, conn.begin():
        enter_tenant(conn, tenant_id)
        return hash_chunks(conn, table, tenant_id, ks)


def _next_chunk(engine: Engine, table: Table, tenant_id: int, after_id: int) -> int | None:
    """The chunk of the tenant's first row at or past `after_id` here (gaps are skipped)."""
    with engine.connect() as conn, conn.begin():
        enter_tenant(conn, tenant_id)
        found = conn.execute(
            text(f"SELECT min(id) FROM {table.name} WHERE tenant_id = :t AND id >= :a"),
            {"t": tenant_id, "a": after_id},
        ).scalar()
    return None if found is None else int(found) // CHUNK_IDS


@dataclass
class Sides:
    source: Engine
    target: Engine
    tenant_id: int
    data: list[Table]
    # One pass of the log's replay, run between hashings, its ids given to Chunks.touched;
    # how many changes it took.
    catch_up: Callable[[], int]

    def _both(self, table: Table, ks: list[int]) -> tuple[Hashes, Hashes]:
        return (
            _hash(self.source, table, self.tenant_id, ks),
            _hash(self.target, table, self.tenant_id, ks),
        )

    def sweep(self, chunks: Chunks) -> None:
        """Hash every chunk of every table once, on both sides, keeping the copy caught up."""
        for table in self.data:
            after = 0
            while True:
                starts = [
                    k
                    for k in (
                        _next_chunk(e, table, self.tenant_id, after)
                        for e in (self.source, self.target)
                    )
                    if k is not None
                ]
                if not starts:
                    break
                first = min(starts)
                ks = list(range(first, first + CHUNKS_PER_STATEMENT))
                chunks.settle(table.name, *self._both(table, ks))
                self.catch_up()
                after = (first + CHUNKS_PER_STATEMENT) * CHUNK_IDS

    def recheck(self, chunks: Chunks) -> None:
        """Re-hash the dirty chunks until few are left: those the cut-over re-hashes."""
        for _ in range(RECHECK_ROUNDS):
            if chunks.dirty_count() <= SETTLED_CHUNKS:
                return
            self.catch_up()
            for table in self.data:
                dirty = sorted(chunks.dirty.get(table.name, ()))
                for at in range(0, len(dirty), CHUNKS_PER_STATEMENT):
                    ks = dirty[at : at + CHUNKS_PER_STATEMENT]
                    chunks.settle(table.name, *self._both(table, ks))

    def final(self, chunks: Chunks) -> None:
        """In the cut-over (source frozen, log drained into `chunks`): prove every row equal,
        re-hashing only the dirty chunks; MoveError naming what differs."""
        with ThreadPoolExecutor(max_workers=2) as pool:
            sides = [
                pool.submit(_final_side, e, self.tenant_id, self.data, chunks)
                for e in (self.source, self.target)
            ]
            source, target = (side.result() for side in sides)
        for table in self.data:
            (count, digest, chunks_here), (other, digest_there, chunks_there) = (
                source[table.name],
                target[table.name],
            )
            if (count, digest) != (other, digest_there):
                differ = sorted(
                    k
                    for k in chunks_here.keys() | chunks_there.keys()
                    if chunks_here.get(k) != chunks_there.get(k)
                )
                ids = ", ".join(f"{k * CHUNK_IDS}-{(k + 1) * CHUNK_IDS - 1}" for k in differ[:5])
                raise MoveError(
                    f"verification failed: {table.name} has {count} rows at the source, "
                    f"{other} at the target; ids that differ are in {ids or 'no chunk'}"
                )


def _final_side(
    engine: Engine, tenant_id: int, data: list[Table], chunks: Chunks
) -> dict[str, tuple[int, str, Hashes]]:
    """Per table: (row count, digest over every chunk hash in order, the chunk hashes),
    from one snapshot."""
    found: dict[str, tuple[int, str, Hashes]] = {}
    with engine.connect() as conn:
        conn = conn.execution_options(isolation_level="REPEATABLE READ")
        with conn.begin():
            enter_tenant(conn, tenant_id)
            for table in data:
                dirty = chunks.dirty.get(table.name, set())
                merged = {
                    k: h for k, h in chunks.proven.get(table.name, {}).items() if k not in dirty
                }
                merged.update(hash_chunks(conn, table, tenant_id, dirty))
                count = int(
                    conn.execute(
                        text(f"SELECT count(*) FROM {table.name} WHERE tenant_id = :t"),
                        {"t": tenant_id},
                    ).scalar_one()
                )
                if count != sum(n for n, _ in merged.values()):
                    raise MoveError(
                        f"verification failed: {table.name} has {count} rows, its chunks "
                        f"{sum(n for n, _ in merged.values())}"
                    )
                digest = hashlib.sha256()
                for k in sorted(merged):
                    n, h = merged[k]
                    digest.update(f"{k}:{n}:{h};".encode())
                found[table.name] = (count, digest.hexdigest(), merged)
    return found
