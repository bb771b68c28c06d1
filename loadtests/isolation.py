"""The cross-tenant check every load-test response goes through."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

CROSS_TENANT = "cross-tenant"


# Every row the load test writes carries its tenant's marker in its name and its email, so
# a row's content says whose it is, whatever its tenant_id field claims.
_NAME_MARKER = re.compile(r"\[t(\d+)\]")
_EMAIL_MARKER = re.compile(r"\+t(\d+)@")


def name_marker(tenant_id: int) -> str:
    """The tag a load-test user's name carries: "[t7]" for tenant 7."""
    return f"[t{tenant_id}]"


def email_marker(tenant_id: int) -> str:
    """The sub-address a load-test user's email carries: "+t7@" for tenant 7."""
    return f"+t{tenant_id}@"


def marked_tenants(row: dict[str, Any]) -> set[int]:
    """The tenants whose markers appear in the row's name or email."""
    found: set[int] = set()
    for field, pattern in (("name", _NAME_MARKER), ("email", _EMAIL_MARKER)):
        value = row.get(field)
        if isinstance(value, str):
            found.update(int(t) for t in pattern.findall(value))
    return found


class OwnershipRegistry:
    """Which users each tenant created, as seen by this load-generator process.

    Ids are numbered per tenant (every tenant has a user 1), so a row is keyed by
    (tenant id, user id): an id alone names no row.
    """

    def __init__(self) -> None:
        self._rows: set[tuple[int, int]] = set()

    def record(self, *, user_id: int, tenant_id: int) -> None:
        """Remember that `tenant_id` created its user `user_id`."""
        self._rows.add((tenant_id, user_id))

    def created(self, *, user_id: int, tenant_id: int) -> bool:
        """Whether this process saw `tenant_id` create its user `user_id`."""
        return (tenant_id, user_id) in self._rows

    def foreign_ids(self, tenant_id: int) -> list[int]:
        """Ids other tenants created: probes whose answer must never be another's row."""
        return sorted({uid for owner, uid in self._rows if owner != tenant_id})


def rows_of(body: Any) -> Iterable[dict[str, Any]]:
    """The user rows in a response body: one object or a list of them."""
    if isinstance(body, dict) and "id" in body:
        return [body]
    if isinstance(body, list):
        return [row for row in body if isinstance(row, dict)]
    return []


def foreign_rows(body: Any, *, tenant_id: int) -> list[tuple[int | None, int | None]]:
    """(user id, other tenant) for each row in `body` that is not `tenant_id`'s to see.

    A row is foreign when its tenant_id field names another tenant, or when its content
    carries another tenant's marker even though its tenant_id field says ours.
    """
    found: list[tuple[int | None, int | None]] = []
    for row in rows_of(body):
        row_id = row.get("id")
        row_id = row_id if isinstance(row_id, int) else None
        row_tenant = row.get("tenant_id")
        if row_tenant != tenant_id:
            found.append((row_id, row_tenant if isinstance(row_tenant, int) else None))
            continue
        found.extend((row_id, other) for other in sorted(marked_tenants(row) - {tenant_id}))
    return found


def describe(found: list[tuple[int | None, int | None]], *, tenant_label: str) -> str:
    """The failure message; it names tenants, not rows, so Locust keeps few failure rows."""
    others = sorted({str(other) for _, other in found})
    return f"{CROSS_TENANT}: {tenant_label} received rows of tenant id(s) {', '.join(others)}"


def next_link(link_header: str | None) -> str | None:
    """The path?query of the rel="next" target in a Link header, if any.

    Only path and query are kept: the next page must be asked of the gateway, whatever
    host a Link might name.
    """
    for part in (link_header or "").split(","):
        target, _, params = part.partition(";")
        if 'rel="next"' in params.replace(" ", ""):
            url = urlsplit(target.strip().strip("<>"))
            return f"{url.path}?{url.query}" if url.query else url.path
    return None
