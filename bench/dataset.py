"""Bench data: `users` rows spread over N tenants, written in SQL by the owner in seconds."""

from __future__ import annotations

import random

import psycopg2


def load_users(owner_url: str, *, tenants: int, users: int) -> None:
    """Tenants 1..`tenants`, users 1..`users`; user g belongs to tenant ((g - 1) % tenants) + 1.

    Rows of a tenant interleave with everyone else's, as sign-ups do over time, so a tenant's
    rows are spread over the table rather than packed: the honest case for reads.
    """
    conn = psycopg2.connect(owner_url, application_name="bench")
    try:
        with conn, conn.cursor() as cur:
            cur.execute("SET LOCAL maintenance_work_mem = '256MB'")
            # The owner loads every tenant's rows in one statement: RLS (forced for the owner
            # too) is lifted for this transaction only; the reads below run under it.
            cur.execute("ALTER TABLE users NO FORCE ROW LEVEL SECURITY")
            cur.execute(
                "INSERT INTO tenants (id, name, slug) "
                "SELECT g, 'Bench tenant ' || g, 'bench-' || g FROM generate_series(1, %s) g",
                (tenants,),
            )
            cur.execute(
                "INSERT INTO users (tenant_id, id, name, email) "
                "SELECT ((g - 1) %% %s) + 1, g, 'User ' || g, 'user' || g || '@example.com' "
                "FROM generate_series(1, %s) g",
                (tenants, users),
            )
            for table, last in (("tenants", tenants), ("users", users)):
                cur.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), %s)", (last,))
            cur.execute("ALTER TABLE users FORCE ROW LEVEL SECURITY")
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
        return tenant, tenant + self.tenants * self._random.randrange(self.per_tenant)
