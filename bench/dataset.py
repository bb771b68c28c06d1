"""Bench data: `users` rows spread over N tenants, written in SQL by the owner in seconds."""

from __future__ import annotations

import random

import psycopg2


def load_users(owner_url: str, *, tenants: int, users: int) -> None:
    """Tenants 1..`tenants` and `users` users: row g (1-based) belongs to tenant
    ((g - 1) % tenants) + 1, where its id is ((g - 1) // tenants) + 1 (ids are per tenant).

    Rows of a tenant interleave with everyone else's, as sign-ups do over time, so a tenant's
    rows are spread over the table rather than packed: the honest case for reads.
    """
    conn = psycopg2.connect(owner_url, application_name="bench")
    try:
        with conn, conn.cursor() as cur:
            cur.execute("SET LOCAL maintenance_work_mem = '256MB'")
            # The owner loads every tenant's rows in one statement: RLS (forced for the owner
            # too) is lifted for this transaction only; the reads below run under it. The id
            # trigger is off too: a counter upsert per row would cost more than the load, so
            # the counters are written once afterwards from what was loaded.
            for table in ("users", "tenant_row_ids"):
                cur.execute(f"ALTER TABLE {table} NO FORCE ROW LEVEL SECURITY")
            cur.execute("ALTER TABLE users DISABLE TRIGGER users_tenant_row_id")
            cur.execute(
                "INSERT INTO tenants (id, name, slug) "
                "SELECT g, 'Bench tenant ' || g, 'bench-' || g FROM generate_series(1, %s) g",
                (tenants,),
            )
            cur.execute("SELECT setval(pg_get_serial_sequence('tenants', 'id'), %s)", (tenants,))
            cur.execute(
                "INSERT INTO users (tenant_id, id, name, email) "
                "SELECT ((g - 1) %% %s) + 1, ((g - 1) / %s) + 1, "
                "'User ' || g, 'user' || g || '@example.com' "
                "FROM generate_series(1, %s) g",
                (tenants, tenants, users),
            )
            # Ids handed out later continue after each tenant's highest loaded one.
            cur.execute(
                "INSERT INTO tenant_row_ids (tenant_id, table_name, last_id) "
                "SELECT tenant_id, 'users', max(id) FROM users GROUP BY tenant_id"
            )
            cur.execute("ALTER TABLE users ENABLE TRIGGER users_tenant_row_id")
            for table in ("users", "tenant_row_ids"):
                cur.execute(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("VACUUM ANALYZE tenants")
            cur.execute("VACUUM ANALYZE users")
    finally:
        conn.close()


class Picker:
    """Random (tenant, user id) pairs that exist in a table made by load_users()."""

    def __init__(self, *, tenants: int, users: int, seed: int = 7) -> None:
        self.tenants = tenants
        self.per_tenant = users // tenants
        self._random = random.Random(seed)

    def pick(self) -> tuple[int, int]:
        """A random tenant and one of its user ids."""
        tenant = self._random.randint(1, self.tenants)
        return tenant, self._random.randint(1, self.per_tenant)
