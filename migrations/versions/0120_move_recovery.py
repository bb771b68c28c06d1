"""Moves that recover by themselves, and carry the tenant's id counters (issue 11).

tenant_moves gets an owner and a heartbeat: the gateway (or CLI) running a move refreshes
heartbeat_at every few seconds; a move whose heartbeat is stale died with its process, and
any gateway replica takes it over (gateway/moverecovery.py).

Every placement gets two mover functions for the per-tenant id counters: a move reads the
source's counters and raises the target's to at least them, so an id deleted just before
the move is not handed out again after it. And a move's marks name their move: a mover
that was taken over (stalled past its heartbeat) can no longer freeze or unmark a tenant
the recovery has already given back, or that a newer move has marked.

Revision ID: 0120_move_recovery
Revises: 0110_placement
Create Date: 2026-12-07
"""

from alembic import op

from migrations.tenant_tables import app_role, is_shared

revision = "0120_move_recovery"
down_revision = "0110_placement"
branch_labels = None
depends_on = None

# As the owner under the caller's app.tenant_id (RLS forced on tenant_row_ids): the mover,
# as the services' role, reads and raises only the counters of the tenant it moves.
_COUNTER_FUNCTIONS = (
    """
    CREATE FUNCTION public.tenant_move_counters()
    RETURNS TABLE (table_name text, last_id bigint)
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
        SELECT c.table_name, c.last_id FROM public.tenant_row_ids c
        WHERE c.tenant_id = nullif(current_setting('app.tenant_id', true), '')::bigint
    $$
    """,
    """
    CREATE FUNCTION public.tenant_move_raise_counter(counter text, at_least bigint)
    RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
    DECLARE
        t bigint := nullif(current_setting('app.tenant_id', true), '')::bigint;
    BEGIN
        IF t IS NULL THEN
            RAISE EXCEPTION 'no tenant set';
        END IF;
        INSERT INTO public.tenant_row_ids AS c (tenant_id, table_name, last_id)
        VALUES (t, counter, at_least)
        ON CONFLICT (tenant_id, table_name)
        DO UPDATE SET last_id = greatest(c.last_id, excluded.last_id);
    END
    $$
    """,
)
_MARK_FUNCTIONS = (
    """
    CREATE FUNCTION public.tenant_move_mark(new_state text, move bigint) RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
    DECLARE
        t bigint := nullif(current_setting('app.tenant_id', true), '')::bigint;
    BEGIN
        IF t IS NULL THEN
            RAISE EXCEPTION 'no tenant set';
        ELSIF new_state IS NULL THEN
            DELETE FROM public.tenant_move_marks WHERE tenant_id = t;
        ELSE
            INSERT INTO public.tenant_move_marks (tenant_id, state, move_id)
            VALUES (t, new_state, move)
            ON CONFLICT (tenant_id)
            DO UPDATE SET state = excluded.state, move_id = excluded.move_id;
        END IF;
    END
    $$
    """,
    # Only while the mark is still this move's: false when it is gone or another move's.
    """
    CREATE FUNCTION public.tenant_move_shift(move bigint, new_state text) RETURNS boolean
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
    DECLARE
        t bigint := nullif(current_setting('app.tenant_id', true), '')::bigint;
    BEGIN
        IF t IS NULL THEN
            RAISE EXCEPTION 'no tenant set';
        ELSIF new_state IS NULL THEN
            DELETE FROM public.tenant_move_marks WHERE tenant_id = t AND move_id = move;
        ELSE
            UPDATE public.tenant_move_marks SET state = new_state
            WHERE tenant_id = t AND move_id = move;
        END IF;
        RETURN FOUND;
    END
    $$
    """,
)
_SIGNATURES = (
    "tenant_move_counters()",
    "tenant_move_raise_counter(text, bigint)",
    "tenant_move_mark(text, bigint)",
    "tenant_move_shift(bigint, text)",
)


def upgrade() -> None:
    # Nullable: the marks set by an older gateway's moves name none.
    op.execute("ALTER TABLE tenant_move_marks ADD COLUMN move_id bigint")
    for function in (*_COUNTER_FUNCTIONS, *_MARK_FUNCTIONS):
        op.execute(function)
    for signature in _SIGNATURES:
        op.execute(f"REVOKE ALL ON FUNCTION public.{signature} FROM PUBLIC")
        op.execute(f'GRANT EXECUTE ON FUNCTION public.{signature} TO "{app_role()}"')
    if not is_shared():
        return
    # Nullable, no default: a catalog-only change. A move begun by an older gateway has no
    # owner; the recovery leaves such a move alone for longer (it cannot be fenced).
    op.execute(
        "ALTER TABLE tenant_moves ADD COLUMN owner text, ADD COLUMN heartbeat_at timestamptz"
    )
    # The recovery's scan: running moves only (a handful), not the whole history.
    op.execute(
        "CREATE INDEX tenant_moves_running ON tenant_moves (heartbeat_at) WHERE finished_at IS NULL"
    )


def downgrade() -> None:
    if is_shared():
        op.execute("DROP INDEX tenant_moves_running")
        op.execute("ALTER TABLE tenant_moves DROP COLUMN heartbeat_at, DROP COLUMN owner")
    for signature in reversed(_SIGNATURES):
        op.execute(f"DROP FUNCTION public.{signature}")
    op.execute("ALTER TABLE tenant_move_marks DROP COLUMN move_id")
