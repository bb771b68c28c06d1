"""The cross-tenant check every load-test response goes through."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

CROSS_TENANT = "cross-tenant"


class OwnershipRegistry:
    """Which tenant created which user id, as seen by this load-generator process.

    User ids come from one identity column shared by all tenants, so an id names exactly
    one tenant's row; an id seen by a tenant that did not create it is a leak even when the
    row's own tenant_id field looks right.
    """

    def __init__(self) -> None:
        self._owner: dict[int, int] = {}

    def record(self, *, user_id: int, tenant_id: int) -> None:
        """Remember that `tenant_id` created `user_id`."""
        self._owner.setdefault(user_id, tenant_id)

    def owner(self, user_id: int) -> int | None:
        """The tenant that created `user_id`, when this process saw it created."""
        return self._owner.get(user_id)

    def foreign_ids(self, tenant_id: int) -> list[int]:
        """Ids created by other tenants: targets for the probes that must answer 404."""
        return [uid for uid, owner in self._owner.items() if owner != tenant_id]


def rows_of(body: Any) -> Iterable[dict[str, Any]]:
    """The user rows in a response body: one object or a list of them."""
    if isinstance(body, dict) and "id" in body:
        return [body]
    if isinstance(body, list):
        return [row for row in body if isinstance(row, dict)]
    return []


def foreign_rows(
    body: Any, *, tenant_id: int, registry: OwnershipRegistry
) -> list[tuple[int | None, int | None]]:
    """(user id, other tenant) for each row in `body` that is not `tenant_id`'s to see."""
    found: list[tuple[int | None, int | None]] = []
    for row in rows_of(body):
        row_id = row.get("id")
        row_tenant = row.get("tenant_id")
        if row_tenant != tenant_id:
            found.append((row_id if isinstance(row_id, int) else None, row_tenant))
            continue
        owner = registry.owner(row_id) if isinstance(row_id, int) else None
        if owner is not None and owner != tenant_id:
            found.append((row_id, owner))
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
