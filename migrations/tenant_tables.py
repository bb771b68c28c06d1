"""DDL for tenant-owned tables, shared by every migration that adds one.

A tenant table gets: row-level security enabled and forced, one policy on the
transaction-local `app.tenant_id` for reads and writes, and grants to the services' role.
"""

from __future__ import annotations

from alembic import op

# nullif(): after a SET LOCAL on a pooled connection ends, the setting reads as '' (not NULL);
# ''::bigint would raise, nullif makes "no tenant" mean "no rows" instead.
TENANT_PREDICATE = "tenant_id = nullif(current_setting('app.tenant_id', true), '')::bigint"


def app_role() -> str:
    return op.get_context().config.attributes["app_role"]  # type: ignore[union-attr]


def enable_tenant_isolation(table: str) -> None:
    """Force RLS on `table` with the tenant policy; grant the services' role DML on it."""
    op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
    op.execute(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")
    op.execute(
        f"CREATE POLICY tenant_isolation ON {table} "
        f"USING ({TENANT_PREDICATE}) WITH CHECK ({TENANT_PREDICATE})"
    )
    role = app_role()
    op.execute(f'GRANT SELECT, INSERT, UPDATE, DELETE ON {table} TO "{role}"')


def grant_identity_sequence(table: str, column: str = "id") -> None:
    role = app_role()
    op.execute(
        f"DO $$ BEGIN EXECUTE format('GRANT USAGE ON SEQUENCE %s TO \"{role}\"', "
        f"pg_get_serial_sequence('{table}', '{column}')); END $$"
    )
