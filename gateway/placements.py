"""The gateway's side of placements (SPEC §11): which exist, and each one's parent rows.

A tenant table's rows point at their tenant through a foreign key, so a dedicated placement
needs the tenant's id in its own `tenants` (only the id: the directory stays in shared).
The gateway role adds that row when it places a tenant there, before the tenant exists.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from fastapi.exceptions import RequestValidationError
from sqlalchemy import Engine, text

from gateway.store import make_engine
from services.tenancy.placements import SHARED


class UnknownPlacement(Exception):
    """No placement of this name is configured (TENANT_DATABASES)."""


def unknown_placement(field: str, name: str, known: list[str]) -> RequestValidationError:
    """The 422 for a placement name no TENANT_DATABASES entry has, shaped like any other."""
    return RequestValidationError(
        [
            {
                "type": "value_error",
                "loc": ("body", field),
                "msg": f"unknown placement {name!r} (known: {', '.join(known)})",
                "input": name,
            }
        ]
    )


class Placements:
    """One gateway-role engine per dedicated placement; `shared` is the gateway's own engine."""

    def __init__(self, urls: Mapping[str, str]) -> None:
        self._urls = dict(urls)
        self._engines: dict[str, Engine] = {}

    @property
    def names(self) -> list[str]:
        """`shared` and every TENANT_DATABASES name."""
        return [SHARED, *(n for n in self._urls if n != SHARED)]

    def check(self, name: str) -> None:
        """UnknownPlacement unless `name` is configured."""
        if name not in self.names:
            raise UnknownPlacement(name)

    def engine(self, name: str) -> Engine:
        """The gateway role's engine on a dedicated placement (opened on first use)."""
        self.check(name)
        if name == SHARED:
            raise ValueError("shared is the gateway's own engine")
        engine = self._engines.get(name)
        if engine is None:
            engine = self._engines[name] = make_engine(self._urls[name])
        return engine

    def parent_row_adder(self, name: str) -> Callable[[int], None] | None:
        """What creating a tenant in `name` must do first (None for shared)."""
        if name == SHARED:
            return None
        engine = self.engine(name)

        def add(tenant_id: int) -> None:
            with engine.begin() as conn:
                conn.execute(
                    text("INSERT INTO tenants (id) VALUES (:t) ON CONFLICT DO NOTHING"),
                    {"t": tenant_id},
                )

        return add

    def dispose(self) -> None:
        """Close every engine opened."""
        for engine in self._engines.values():
            engine.dispose()
        self._engines.clear()
