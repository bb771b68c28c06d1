"""The model side of tenancy: every tenant-owned model inherits `TenantScoped`."""

from __future__ import annotations

from sqlalchemy import BigInteger
from sqlalchemy.orm import Mapped, mapped_column


class TenantScoped:
    """Mixin for tenant-owned models: `tenant_id` leads the primary key.

    The ORM wall (services.tenancy.session) filters every select, update and delete of a
    `TenantScoped` model by the session's tenant and stamps new rows with it, so a model only
    has to inherit this mixin; the table itself needs the RLS DDL of
    `migrations.tenant_tables.enable_tenant_isolation()`.
    """

    # Leading the primary key: the RLS predicate `tenant_id = ...` becomes an index condition.
    tenant_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
