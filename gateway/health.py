"""/healthz (the process runs) and /readyz (PostgreSQL, Redis and every upstream answer)."""

from __future__ import annotations

import asyncio

import aiohttp
from fastapi import APIRouter, Request
from starlette.responses import JSONResponse

from gateway import store
from gateway.breaker import RedisBusy, RedisDown
from gateway.errors import DependencyDown
from gateway.state import GatewayState, StateDep

router = APIRouter()
CHECK_TIMEOUT_SECONDS = 1.0


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """200 while the process runs."""
    return {"status": "ok"}


async def _postgres(state: GatewayState) -> str:
    try:
        await store.run_db(store.ping, state.engine)
    except DependencyDown:
        return "down"
    return "up"


async def _redis(state: GatewayState) -> str:
    # Straight through the breaker: a readiness probe is also how the breaker closes again.
    try:
        await state.redis.call(lambda r: r.ping())
    except RedisBusy:
        return "up"  # every connection in use: busy here, not Redis down
    except RedisDown:
        return "down"
    finally:
        state.metrics.redis_up.set(1 if state.redis.up else 0)
    return "up"


async def _upstream(state: GatewayState, origin: str) -> str:
    try:
        async with state.session.get(
            origin + "/healthz", timeout=aiohttp.ClientTimeout(total=CHECK_TIMEOUT_SECONDS)
        ) as response:
            return "up" if response.status == 200 else "down"
    except (aiohttp.ClientError, TimeoutError):
        return "down"


@router.get("/readyz")
async def readyz(request: Request, state: StateDep) -> JSONResponse:
    """Readiness; on the public port of a gateway with an internal listener, without details."""
    response = await _readiness(state)
    if getattr(request.state, "public_only", False):
        # Which dependency is down, and the route table, are for operators, not the internet.
        status = "unavailable" if response.status_code == 503 else "ok"
        return JSONResponse({"status": status}, status_code=response.status_code)
    return response


async def _readiness(state: GatewayState) -> JSONResponse:
    """200 when serving works; Redis down alone is 200 "degraded", anything else down is 503.

    A Redis blip must not make a load balancer pull every replica: the gateway still serves
    (tenants from PostgreSQL, rate limits open). PostgreSQL or an upstream down is not ready.
    """
    routes = state.routes.items
    postgres, redis, *upstreams = await asyncio.gather(
        _postgres(state), _redis(state), *(_upstream(state, origin) for _, origin in routes)
    )
    # Upstreams are named by route prefix: their addresses are not for the outside.
    body: dict[str, object] = {
        "postgres": postgres,
        "redis": redis,
        "upstreams": {prefix: up for (prefix, _), up in zip(routes, upstreams, strict=True)},
    }
    if postgres == "down" or "down" in upstreams:
        body["status"] = "unavailable"
        return JSONResponse(body, status_code=503)
    body["status"] = "degraded" if redis == "down" else "ok"
    return JSONResponse(body, status_code=200)
