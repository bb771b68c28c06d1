"""The gateway's own paths answer 405 for a method they do not serve.

Without this, `POST /healthz` fell through to the catch-all tenant route and got that
route's 401/404, as if /healthz were a tenant's resource.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from services.tenancy.allow import method_not_allowed


def _refusal(served: frozenset[str]) -> Callable[[Request], Awaitable[JSONResponse]]:
    async def refuse(_request: Request) -> JSONResponse:
        return method_not_allowed(served)

    return refuse


def refuse_other_methods(app: FastAPI, routes: Iterable[BaseRoute], methods: Sequence[str]) -> None:
    """For each path of `routes`, a 405 (with Allow) on `app` for every other method."""
    served: dict[str, set[str]] = {}
    for route in routes:
        if isinstance(route, Route) and route.methods:
            served.setdefault(route.path, set()).update(route.methods)
    for path, known in served.items():
        others = [m for m in methods if m not in known]
        if others:
            app.add_route(path, _refusal(frozenset(known)), methods=others)
