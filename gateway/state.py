"""What the lifespan opens and every request uses, handed on as typed state."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated

import aiohttp
from fastapi import Depends
from sqlalchemy import Engine
from starlette.requests import Request

from gateway.admission import Admission
from gateway.breaker import RedisLink
from gateway.config import Settings
from gateway.hold import Holds
from gateway.invalidation import Invalidator
from gateway.keyguard import KeyLookupGuard
from gateway.metrics import Metrics
from gateway.placements import Placements
from gateway.proxy import RouteTable
from gateway.purger import Lifecycle
from gateway.ratelimit import RateLimiter
from gateway.tenants import TenantDirectory
from gateway.usage import UsageBook
from services.tenancy.signing import Signer


@dataclass(slots=True)
class GatewayState:
    settings: Settings
    engine: Engine
    redis: RedisLink
    session: aiohttp.ClientSession
    routes: RouteTable
    metrics: Metrics
    directory: TenantDirectory
    limiter: RateLimiter
    invalidator: Invalidator
    usage: UsageBook
    signer: Signer
    admission: Admission
    key_guard: KeyLookupGuard
    lifecycle: Lifecycle | None = None
    placements: Placements = field(default_factory=lambda: Placements({}))
    holds: Holds = field(default_factory=Holds)
    # The services' role in every placement, for moves (empty without APP_DATABASE_URL).
    mover_engines: dict[str, Engine] = field(default_factory=dict)


def gateway_state(request: Request) -> GatewayState:
    """FastAPI dependency: the state the lifespan built."""
    return request.state.gateway


StateDep = Annotated[GatewayState, Depends(gateway_state)]
