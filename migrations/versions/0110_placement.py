"""Placement (issue 11): which database holds a tenant's rows, and the epoch of that choice.

Revision ID: 0110_placement
Revises: 0100_lifecycle
Create Date: 2026-12-02
"""

from alembic import op

from migrations.tenant_tables import (
    MOVE_CAPTURE_FUNCTION,
    MOVE_FUNCTIONS,
    TENANT_PREDICATE,
    app_role,
    capture_moves,
    gateway_role,
    is_shared,
)

revision = "0110_placement"
down_revision = "0100_lifecycle"
branch_labels = None
depends_on = None


def upgrade() -> None:
    _move_capture()
    if not is_shared():
        return  # the directory (which tenant lives where) is the gateway's, in shared only
    # A constant default is a catalog-only change (PostgreSQL 11+): no rewrite, no long lock.
    # The epoch grows by one at every move; services refuse a context older than one they
    # have seen (fencing), so a gateway replica with a stale cache cannot write to the old place.
    op.execute(
        """
        ALTER TABLE tenants
            ADD COLUMN placement text NOT NULL DEFAULT 'shared'
                CONSTRAINT tenants_placement_format CHECK (placement ~ '^[a-z][a-z0-9_]{0,31}$'),
            ADD COLUMN placement_epoch bigint NOT NULL DEFAULT 0
                CONSTRAINT tenants_placement_epoch_check CHECK (placement_epoch >= 0)
        """
    )
    # The moves, for GET /admin/tenants/{id}/move; one unfinished move per tenant at a time.
    op.execute(
        """
        CREATE TABLE tenant_moves (
            id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            tenant_id bigint NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
            from_placement text NOT NULL,
            to_placement text NOT NULL,
            state text NOT NULL CONSTRAINT tenant_moves_state_check
                CHECK (state IN ('copying', 'catching_up', 'cutover', 'done', 'failed')),
            rows_copied bigint NOT NULL DEFAULT 0,
            write_pause_ms integer,
            error text,
            started_at timestamptz NOT NULL DEFAULT now(),
            finished_at timestamptz
        )
        """
    )
    op.execute(
        "CREATE UNIQUE INDEX tenant_moves_one_running ON tenant_moves (tenant_id) "
        "WHERE finished_at IS NULL"
    )
    op.execute("CREATE INDEX ix_tenant_moves_tenant_id ON tenant_moves (tenant_id, id)")
    gateway = gateway_role()
    op.execute(f'GRANT SELECT, INSERT, UPDATE ON public.tenant_moves TO "{gateway}"')


def _move_capture() -> None:
    """What a live move needs in every placement (docs/scaling.md, "Moving a tenant").

    tenant_move_marks: a tenant being copied out of this database ('capturing': its writes
    are logged in tenant_move_changes) or not served from it ('frozen': its writes are
    refused, the mover's excepted). Both are tenant-owned (RLS forced) and reached by no
    role directly: the trigger and the mover's functions run as the owner, under the
    caller's app.tenant_id, so a mover working as the services' role touches only the
    tenant it is moving, and no role needs BYPASSRLS.
    """
    op.execute(
        """
        CREATE TABLE tenant_move_marks (
            tenant_id bigint PRIMARY KEY REFERENCES tenants (id) ON DELETE CASCADE,
            state text NOT NULL CONSTRAINT tenant_move_marks_state_check
                CHECK (state IN ('capturing', 'frozen'))
        )
        """
    )
    op.execute(
        """
        CREATE TABLE tenant_move_changes (
            tenant_id bigint NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
            seq bigint GENERATED ALWAYS AS IDENTITY,
            table_name text NOT NULL,
            row_id bigint NOT NULL,
            CONSTRAINT tenant_move_changes_pkey PRIMARY KEY (tenant_id, seq)
        )
        """
    )
    for table in ("tenant_move_marks", "tenant_move_changes"):
        op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        op.execute(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")
        op.execute(
            f"CREATE POLICY tenant_isolation ON {table} "
            f"USING ({TENANT_PREDICATE}) WITH CHECK ({TENANT_PREDICATE})"
        )
        op.execute(f'REVOKE ALL ON {table} FROM "{app_role()}", "{gateway_role()}"')
    op.execute(MOVE_CAPTURE_FUNCTION)
    op.execute("REVOKE ALL ON FUNCTION public.tenant_move_capture() FROM PUBLIC")
    for function in MOVE_FUNCTIONS:
        op.execute(function)
    for signature in ("tenant_move_mark(text)", "tenant_move_take_changes(integer)"):
        op.execute(f"REVOKE ALL ON FUNCTION public.{signature} FROM PUBLIC")
        op.execute(f'GRANT EXECUTE ON FUNCTION public.{signature} TO "{app_role()}"')
    capture_moves("users")


def downgrade() -> None:
    op.execute("DROP TRIGGER users_move_capture ON users")
    op.execute("DROP FUNCTION tenant_move_take_changes(integer)")
    op.execute("DROP FUNCTION tenant_move_mark(text)")
    op.execute("DROP FUNCTION tenant_move_capture()")
    op.execute("DROP TABLE tenant_move_changes")
    op.execute("DROP TABLE tenant_move_marks")
    if not is_shared():
        return
    op.execute("DROP TABLE tenant_moves")
    op.execute("ALTER TABLE tenants DROP COLUMN placement_epoch, DROP COLUMN placement")
