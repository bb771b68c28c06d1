"""Per-tenant limits: max_in_flight (gateway) and statement_timeout_ms (services).

Both nullable: null means "the deployment's default" (TENANT_MAX_IN_FLIGHT, and the
services' own statement timeout), so existing tenants keep working unchanged.

Revision ID: 0003_tenant_limits
Revises: 0002
Create Date: 2026-12-01
"""

from alembic import op

from migrations.tenant_tables import is_shared

revision = "0003_tenant_limits"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if not is_shared():
        return  # the gateway's tenants table: only in shared
    # ADD COLUMN without a default is a catalog-only change: no table rewrite, no long lock.
    op.execute(
        """
        ALTER TABLE tenants
            ADD COLUMN IF NOT EXISTS max_in_flight integer
                CONSTRAINT tenants_max_in_flight_check CHECK (max_in_flight >= 0),
            ADD COLUMN IF NOT EXISTS statement_timeout_ms integer
                CONSTRAINT tenants_statement_timeout_check CHECK (statement_timeout_ms > 0)
        """
    )


def downgrade() -> None:
    if not is_shared():
        return
    op.execute("ALTER TABLE tenants DROP COLUMN statement_timeout_ms, DROP COLUMN max_in_flight")
