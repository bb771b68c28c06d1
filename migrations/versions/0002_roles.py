"""Least privilege: the gateway role's grants, the definer function pinned against pg_temp.

The roles themselves (owner, gateway, services) and the hand-over of existing objects to
the owner are done by `python -m migrations` before this runs (migrations/roles.py): they
need the bootstrap connection, while every revision runs as the owner.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""

from alembic import op

from migrations.tenant_tables import TENANT_ROW_ID_FUNCTION, app_role, gateway_role, is_shared

SUPERUSER_LOAD_POLICY = "superuser_session_loads"
_SESSION_IS_SUPERUSER = "(SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = session_user)"

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Before this revision search_path lacked pg_temp and the table was unqualified: a temp
    # table named tenant_row_ids made the function run the caller's trigger as the owner.
    op.execute(TENANT_ROW_ID_FUNCTION.format(verb="CREATE OR REPLACE"))
    op.execute("REVOKE ALL ON FUNCTION public.tenant_row_id() FROM PUBLIC")
    if is_shared():
        # Trigger functions need no EXECUTE to fire; nobody needs to call them by name.
        op.execute("REVOKE ALL ON FUNCTION public.tenants_default_slug() FROM PUBLIC")
    # The function now runs as the owner, which forced RLS holds to the tenant's own counters.
    # A superuser's session (a bulk load, a restore: it bypasses RLS on the tenant tables
    # themselves) sets no tenant; this keeps such loads working. session_user cannot be
    # changed by a non-superuser, so no other role gains anything from it.
    op.execute(
        f"""
        CREATE POLICY {SUPERUSER_LOAD_POLICY} ON public.tenant_row_ids
        USING ({_SESSION_IS_SUPERUSER}) WITH CHECK ({_SESSION_IS_SUPERUSER})
        """
    )

    # The gateway and its admin API: tenants (read, create, update, delete) and api_keys
    # (read, create, revoke = update). Deleting a tenant cascades to tenant tables through
    # the foreign keys, which run as their owner: the gateway needs nothing on them.
    gateway = gateway_role()
    if not is_shared():
        # A dedicated placement: the gateway adds (and removes) the parent row of each tenant
        # it places there; deleting one cascades to the tenant's rows, as in shared.
        op.execute(f'REVOKE ALL ON tenants, users, tenant_row_ids FROM "{gateway}"')
        op.execute(f'GRANT SELECT, INSERT, DELETE ON public.tenants TO "{gateway}"')
        op.execute(f'REVOKE ALL ON tenants, tenant_row_ids FROM "{app_role()}"')
        return
    op.execute(f'REVOKE ALL ON tenants, api_keys, users, tenant_row_ids FROM "{gateway}"')
    op.execute(f'GRANT SELECT, INSERT, UPDATE, DELETE ON public.tenants TO "{gateway}"')
    op.execute(f'GRANT SELECT, INSERT, UPDATE ON public.api_keys TO "{gateway}"')
    # Stated again so that a grant added by hand on an upgraded database stands out.
    op.execute(f'REVOKE ALL ON tenants, api_keys, tenant_row_ids FROM "{app_role()}"')


def downgrade() -> None:
    op.execute(f"DROP POLICY {SUPERUSER_LOAD_POLICY} ON public.tenant_row_ids")
    gateway = gateway_role()
    if not is_shared():
        op.execute(f'REVOKE ALL ON public.tenants FROM "{gateway}"')
        return
    op.execute(f'REVOKE ALL ON public.tenants, public.api_keys FROM "{gateway}"')
    op.execute("GRANT EXECUTE ON FUNCTION public.tenants_default_slug() TO PUBLIC")
