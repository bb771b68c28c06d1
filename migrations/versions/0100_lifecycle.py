"""Tenant lifecycle (issue 13): pending_deletion, the purge's claim, deletion certificates.

Revision ID: 0100_lifecycle
Revises: 0003_tenant_limits
Create Date: 2026-12-01
"""

from alembic import op

from migrations.tenant_tables import gateway_role, is_shared

revision = "0100_lifecycle"
down_revision = "0003_tenant_limits"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if not is_shared():
        return  # the gateway's tenants table and its records: only in shared
    op.execute("ALTER TABLE tenants DROP CONSTRAINT tenants_status_check")
    op.execute(
        "ALTER TABLE tenants ADD CONSTRAINT tenants_status_check "
        "CHECK (status IN ('active', 'suspended', 'pending_deletion'))"
    )
    # When DELETE was asked: the purge is due TENANT_DELETION_GRACE_SECONDS later.
    op.execute("ALTER TABLE tenants ADD COLUMN deletion_requested_at timestamptz")
    # The record of a purge, kept after the tenant row is gone (no foreign key on purpose).
    # A row without finished_at is a purge under way (or interrupted: resumed, with the counts
    # taken before its first delete, so the certificate still tells what there was).
    op.execute(
        """
        CREATE TABLE tenant_deletions (
            tenant_id bigint PRIMARY KEY,
            slug text NOT NULL,
            counts_before jsonb NOT NULL,
            started_at timestamptz NOT NULL DEFAULT now(),
            finished_at timestamptz,
            certificate jsonb
        )
        """
    )
    gateway = gateway_role()
    op.execute(f'GRANT SELECT, INSERT, UPDATE ON public.tenant_deletions TO "{gateway}"')
    # The export's manifest names the schema revision its rows follow.
    op.execute(f'GRANT SELECT ON public.alembic_version TO "{gateway}"')


def downgrade() -> None:
    if not is_shared():
        return
    op.execute("DROP TABLE tenant_deletions")
    # Nothing is destroyed by a downgrade: a tenant pending deletion stays refused.
    op.execute("UPDATE tenants SET status = 'suspended' WHERE status = 'pending_deletion'")
    op.execute("ALTER TABLE tenants DROP COLUMN deletion_requested_at")
    op.execute("ALTER TABLE tenants DROP CONSTRAINT tenants_status_check")
    op.execute(
        "ALTER TABLE tenants ADD CONSTRAINT tenants_status_check "
        "CHECK (status IN ('active', 'suspended'))"
    )
    op.execute(f'REVOKE ALL ON public.alembic_version FROM "{gateway_role()}"')
