"""DDL for tenant-owned tables, shared by every migration that adds one.

A tenant table gets: row-level security enabled and forced, one policy on the
transaction-local `app.tenant_id` for reads and writes, grants to the services' role, and
ids numbered per tenant (`number_rows_per_tenant`).
"""

from __future__ import annotations

from alembic import op

# nullif(): after a SET LOCAL on a pooled connection ends, the setting reads as '' (not NULL);
# ''::bigint would raise, nullif makes "no tenant" mean "no rows" instead.
TENANT_PREDICATE = "tenant_id = nullif(current_setting('app.tenant_id', true), '')::bigint"


# SECURITY DEFINER: the services' role has no rights on the counters; the function runs as
# the owner. Hardened against the caller (issue 15): search_path ends in pg_temp, so no temp
# table or function can shadow what it names, and every table is named with its schema.
TENANT_ROW_ID_FUNCTION = """
    {verb} FUNCTION public.tenant_row_id() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
    BEGIN
        IF NEW.id IS NULL THEN
            INSERT INTO public.tenant_row_ids AS c (tenant_id, table_name, last_id)
            VALUES (NEW.tenant_id, TG_ARGV[0], 1)
            ON CONFLICT (tenant_id, table_name) DO UPDATE SET last_id = c.last_id + 1
            RETURNING c.last_id INTO NEW.id;
        ELSE
            -- An explicit id (a bulk load, a restore) moves the counter past it, so the
            -- ids handed out later never collide with it.
            INSERT INTO public.tenant_row_ids AS c (tenant_id, table_name, last_id)
            VALUES (NEW.tenant_id, TG_ARGV[0], NEW.id)
            ON CONFLICT (tenant_id, table_name)
            DO UPDATE SET last_id = greatest(c.last_id, excluded.last_id);
        END IF;
        RETURN NEW;
    END
    $$
"""


# A live move (issue 11) logs the moving tenant's writes, and refuses them where the tenant
# is no longer served. Runs as the owner under the writer's app.tenant_id (RLS forced on the
# marks and the log), so it sees only the writer's own tenant's mark. Tenants that are not
# moving pay one primary-key probe of a table that is empty or nearly so.
MOVE_CAPTURE_FUNCTION = """
    CREATE FUNCTION public.tenant_move_capture() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
    DECLARE
        row_tenant bigint;
        row_key bigint;
        mark text;
    BEGIN
        IF TG_OP = 'DELETE' THEN
            row_tenant := OLD.tenant_id; row_key := OLD.id;
        ELSE
            row_tenant := NEW.tenant_id; row_key := NEW.id;
        END IF;
        SELECT m.state INTO mark FROM public.tenant_move_marks m WHERE m.tenant_id = row_tenant;
        IF mark IS NULL THEN
            RETURN NULL;
        ELSIF mark = 'frozen' THEN
            IF current_setting('app.tenant_mover', true) = 'on' THEN
                RETURN NULL;
            END IF;
            -- SQLSTATE class 55: the services answer it 503 with Retry-After.
            RAISE EXCEPTION 'tenant % is not served from this placement', row_tenant
                USING ERRCODE = 'object_not_in_prerequisite_state';
        END IF;
        INSERT INTO public.tenant_move_changes (tenant_id, table_name, row_id)
        VALUES (row_tenant, TG_ARGV[0], row_key);
        RETURN NULL;
    END
    $$
"""
# The mover's two calls, as the services' role with app.tenant_id set: mark (or unmark)
# the current tenant; take (and delete) its oldest logged changes.
MOVE_FUNCTIONS = (
    """
    CREATE FUNCTION public.tenant_move_mark(new_state text) RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
    DECLARE
        t bigint := nullif(current_setting('app.tenant_id', true), '')::bigint;
    BEGIN
        IF t IS NULL THEN
            RAISE EXCEPTION 'no tenant set';
        ELSIF new_state IS NULL THEN
            DELETE FROM public.tenant_move_marks WHERE tenant_id = t;
        ELSE
            INSERT INTO public.tenant_move_marks (tenant_id, state) VALUES (t, new_state)
            ON CONFLICT (tenant_id) DO UPDATE SET state = excluded.state;
        END IF;
    END
    $$
    """,
    """
    CREATE FUNCTION public.tenant_move_take_changes(max_rows integer)
    RETURNS TABLE (table_name text, row_id bigint)
    LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
        DELETE FROM public.tenant_move_changes c
        WHERE c.tenant_id = nullif(current_setting('app.tenant_id', true), '')::bigint
          AND c.seq IN (
            SELECT c2.seq FROM public.tenant_move_changes c2
            WHERE c2.tenant_id = nullif(current_setting('app.tenant_id', true), '')::bigint
            ORDER BY c2.seq LIMIT max_rows)
        RETURNING c.table_name, c.row_id
    $$
    """,
)


def capture_moves(table: str) -> None:
    """Let a live move follow `table`'s writes (every tenant table with a per-tenant id)."""
    op.execute(
        f"CREATE TRIGGER {table}_move_capture AFTER INSERT OR UPDATE OR DELETE ON {table} "
        f"FOR EACH ROW EXECUTE FUNCTION tenant_move_capture('{table}')"
    )


def is_shared() -> bool:
    """Whether this run migrates `shared` (DATABASE_URL's database, the gateway's directory).

    A dedicated placement (TENANT_DATABASES) gets every tenant table, with the same RLS,
    grants and counters, but not the gateway's tables: its `tenants` holds only the ids its
    tenant tables' foreign keys point at (SPEC §11).
    """
    attributes = op.get_context().config.attributes  # type: ignore[union-attr]
    return attributes.get("placement", "shared") == "shared"


def app_role() -> str:
    return op.get_context().config.attributes["app_role"]  # type: ignore[union-attr]


def gateway_role() -> str:
    return op.get_context().config.attributes["gateway_role"]  # type: ignore[union-attr]


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


def create_row_numbering() -> None:
    """Create the per-tenant id counters and the trigger function that hands them out (once)."""
    # Tenant-owned like any tenant table (RLS forced, same policy), so the start-up audit and
    # the database rules hold; the services' role gets no grant: only the trigger writes it.
    op.execute(
        """
        CREATE TABLE tenant_row_ids (
            tenant_id bigint NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
            table_name text NOT NULL,
            last_id bigint NOT NULL,
            CONSTRAINT tenant_row_ids_pkey PRIMARY KEY (tenant_id, table_name)
        )
        """
    )
    op.execute("ALTER TABLE tenant_row_ids ENABLE ROW LEVEL SECURITY")
    op.execute("ALTER TABLE tenant_row_ids FORCE ROW LEVEL SECURITY")
    op.execute(
        "CREATE POLICY tenant_isolation ON tenant_row_ids "
        f"USING ({TENANT_PREDICATE}) WITH CHECK ({TENANT_PREDICATE})"
    )
    # Running as the owner does not widen the wall: the counter row is the inserted row's own
    # tenant's, and the policy above still applies to a non-superuser owner (RLS is forced).
    # A row for another tenant than app.tenant_id is refused by the tenant table's WITH CHECK
    # right after this trigger, which rolls the counter change back with the statement.
    # The counter row stays locked until commit, so one tenant's concurrent inserts into one
    # table queue behind each other (other tenants' do not): the price of per-tenant ids,
    # acceptable while each write is one short transaction, as in the services.
    op.execute(TENANT_ROW_ID_FUNCTION.format(verb="CREATE"))
    # Only a trigger can run it, but nobody else needs to name it either.
    op.execute("REVOKE ALL ON FUNCTION tenant_row_id() FROM PUBLIC")


def number_rows_per_tenant(table: str) -> None:
    """Number `table`'s rows per tenant (1, 2, 3, ... in each tenant) from tenant_row_ids.

    A shared sequence would let a tenant count everyone else's inserts from the gaps
    between its own ids; per-tenant numbers leak nothing across the wall.
    """
    # The table's name is passed, not read from TG_TABLE_NAME: on Citus the trigger fires on
    # a shard (users_102008), whose name changes when shards move or split.
    op.execute(
        f"CREATE TRIGGER {table}_tenant_row_id BEFORE INSERT ON {table} "
        f"FOR EACH ROW EXECUTE FUNCTION tenant_row_id('{table}')"
    )
