"""Placement (issue 11): which database holds a tenant's rows, and the epoch of that choice.

Revision ID: 0110_placement
Revises: 0100_lifecycle
Create Date: 2026-12-02
"""

from alembic import op

from migrations.tenant_tables import is_shared

revision = "0110_placement"
down_revision = "0100_lifecycle"
branch_labels = None
depends_on = None


def upgrade() -> None:
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


def downgrade() -> None:
    if not is_shared():
        return
    op.execute("ALTER TABLE tenants DROP COLUMN placement_epoch, DROP COLUMN placement")
