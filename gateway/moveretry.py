"""A request its service refused because the tenant's placement changed under it goes once more.

A request passes the move's hold check (pipeline.py) before its body is read and forwarded;
if the cut-over freezes the source meanwhile, its write is refused there (or a service that
has seen the new epoch refuses the old one). Either refusal did nothing (no transaction of
it committed) and says so with a header, so the gateway waits out the hold, reads where
the tenant lives now and sends the same request again, once: the client sees its answer,
not a 503. One retry: a second refusal (a replica still behind) is passed on as it is.
"""

from __future__ import annotations

from starlette.requests import Request

from gateway.state import GatewayState


async def refused_by_move(request: Request, state: GatewayState, tenant_id: int) -> bool:
    """Whether the answer was such a refusal; if so, once the tenant's hold (if any) ended."""
    if not getattr(request.state, "placement_changed", False):
        return False
    request.state.placement_changed = False
    await state.holds.wait(tenant_id)
    return True
