"""Placements (SPEC §11): where a tenant's rows live, `shared` or a `TENANT_DATABASES` name.

`TENANT_DATABASES` says *where* each placement is (`name=postgresql://host:port/db`, comma
list). It does not say *who* connects: every process reaches a placement as its own role (the
services as theirs, the gateway as its), with that role's user and password and the
placement's host, port and database. So the same value can be given to every process; a
password written into it (the bootstrap user's, for migrations) is ignored by the running
ones (`make run` hands them the value without it).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from sqlalchemy.engine import URL, make_url

from services.tenancy.dburl import to_psycopg2

SHARED = "shared"
# The signed context's fields (services.tenancy.signing extra): absent means shared, epoch 0.
PLACEMENT_FIELD = "placement"
EPOCH_FIELD = "placement_epoch"
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,31}$")


def parse_tenant_databases(raw: str | None) -> dict[str, str]:
    """`"eu=postgresql://h/db,big=postgresql://h2/db"` -> {"eu": ..., "big": ...}; ValueError."""
    placements: dict[str, str] = {}
    for item in (raw or "").split(","):
        item = item.strip()
        if not item:
            continue
        name, sep, url = item.partition("=")
        name, url = name.strip(), url.strip()
        if not sep or not _NAME.match(name):
            raise ValueError(f"{item!r} is not NAME=postgresql://host:port/database")
        if name == SHARED:
            raise ValueError("shared is DATABASE_URL's database; name the others otherwise")
        if name in placements:
            raise ValueError(f"placement {name} is listed twice")
        try:
            parsed = to_psycopg2(url)
        except Exception as exc:  # sqlalchemy's own parse errors name no variable
            raise ValueError(f"placement {name}: {exc}") from None
        if not parsed.database:
            raise ValueError(f"placement {name}: the URL names no database")
        placements[name] = url
    return placements


def as_role(role_url: str | URL, placement_url: str) -> URL:
    """`role_url`'s user and password at `placement_url`'s host, port and database."""
    role = make_url(role_url) if isinstance(role_url, str) else role_url
    where = make_url(placement_url)
    return role.set(host=where.host, port=where.port, database=where.database)


def role_urls(role_url: str | URL, placements: Mapping[str, str]) -> dict[str, URL]:
    """Every placement's URL for one role, `shared` (= `role_url` itself) first."""
    shared = make_url(role_url) if isinstance(role_url, str) else role_url
    return {SHARED: shared, **{n: as_role(shared, u) for n, u in placements.items()}}


def signed_placement(placement: str, epoch: int) -> dict[str, str | int]:
    """The signed fields naming a tenant's placement; none for a never-moved shared tenant."""
    if placement == SHARED and epoch == 0:
        return {}
    return {PLACEMENT_FIELD: placement, EPOCH_FIELD: epoch}
