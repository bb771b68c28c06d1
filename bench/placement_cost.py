"""What placements cost (issue 11): a dedicated tenant's reads against a shared one's, and
every write with the move-capture trigger against without it.

- Placement: the same GET /users/{id} through the same gateway and users service for a
  tenant in `dedicated` and one in `shared` (two databases of one server, so what differs
  is the request path: the placement in the signed context, the engine picked per request).
- Capture: the trigger that lets a live move follow a tenant's writes fires on every write
  of every tenant, moving or not (one primary-key probe of `tenant_move_marks`). pgbench
  creates, renames and deletes a user per transaction with the trigger on and off.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import psycopg2

from bench.generator import run_requests
from bench.measure import Comparison, Sample, Target, figures, interleaved
from bench.pgbench import Pgbench
from bench.proxying import BenchTenant, via_gateway
from bench.settings import Scale
from bench.stack import HttpStack
from services.tenancy.dburl import derive_app_url, plain

# Issue 11: a request for a dedicated tenant costs no more than one in shared.
PLACEMENT_TARGET = Target("throughput", at_least=True, value=0.95)

# A user created, renamed and deleted, as the users service's three writes do: three rows
# through the capture trigger (and the id trigger on the insert) per transaction.
TENANT_WRITE = r"""
\set t random(1, :tenants)
BEGIN;
SET LOCAL app.tenant_id = :t \;
INSERT INTO users (tenant_id, name) VALUES (:t, 'bench write') RETURNING id AS uid
\gset
UPDATE users SET name = 'bench renamed' WHERE tenant_id = :t AND id = :uid;
DELETE FROM users WHERE tenant_id = :t AND id = :uid;
COMMIT;
"""
CAPTURE_TRIGGER = "users_move_capture"


def compare_placements(
    stack: HttpStack, shared: BenchTenant, dedicated: BenchTenant, *, scale: Scale
) -> Comparison:
    """GET /users/{id} for a dedicated tenant vs a shared one, same gateway, interleaved."""

    def reads(tenant: BenchTenant) -> Callable[[], Sample]:
        factory = via_gateway(tenant.api_key, tenant.user_ids)
        return lambda: run_requests(
            stack.gateway_url,
            factory,
            concurrency=scale.http_concurrency,
            seconds=scale.tutorial_seconds,
            requests=scale.http_requests,
        )

    # Three rounds at most: `make bench` stays under 5 minutes at full scale.
    samples = interleaved(
        {"dedicated": reads(dedicated), "shared": reads(shared)},
        rounds=min(3, scale.http_rounds),
    )
    return Comparison(
        "reads of a tenant in a dedicated placement vs in shared",
        figures("dedicated", samples["dedicated"]),
        figures("shared", samples["shared"]),
        target=PLACEMENT_TARGET,
    )


@contextmanager
def capture_disabled(owner_url: str) -> Iterator[None]:
    """The move-capture trigger off on `users` for the duration (bench database only)."""
    conn = psycopg2.connect(owner_url, application_name="bench")
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(f"ALTER TABLE users DISABLE TRIGGER {CAPTURE_TRIGGER}")
        yield
    finally:
        with conn.cursor() as cur:
            cur.execute(f"ALTER TABLE users ENABLE TRIGGER {CAPTURE_TRIGGER}")
        conn.close()


def compare_capture(pgbench: Pgbench, owner_url: str, *, tenants: int, scale: Scale) -> Comparison:
    """The same writes as the services' role, the capture trigger on vs off. No target: it
    is the price of moving tenants live, paid by every write; the figure says how big."""
    app_url = plain(derive_app_url(owner_url))

    def writes() -> Sample:
        return pgbench.run(
            app_url,
            script=TENANT_WRITE,
            variables={"tenants": tenants},
            clients=scale.db_clients,
            # Each write transaction costs several reads' worth: a quarter as many keep
            # `make bench` under 5 minutes at full scale.
            transactions=scale.db_transactions // 4,
        )

    def without_trigger() -> Sample:
        with capture_disabled(owner_url):
            return writes()

    samples = interleaved(
        {"trigger on": writes, "trigger off": without_trigger}, rounds=min(3, scale.db_rounds)
    )
    return Comparison(
        "writes with the move-capture trigger vs without "
        f"(create, rename, delete; {tenants} tenants)",
        figures("trigger on", samples["trigger on"]),
        figures("trigger off", samples["trigger off"]),
        unit="tx",
    )
