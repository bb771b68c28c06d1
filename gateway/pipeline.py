"""The gateway's request path, in order: identify -> authenticate -> validate tenant ->
rate limit -> admit -> sign -> forward. Each step is one call into the module that owns it."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from gateway import hangup, identity, proxy
from gateway.errors import GatewayError
from gateway.state import GatewayState
from gateway.tenants import validate_tenant
from services.tenancy.signing import request_target, sign_headers

# uvicorn's parser sets no limit; nginx's default is 4 x 8 KiB. Anything bigger is refused
# before it is parsed further or copied upstream.
MAX_HEADER_BYTES = 32 * 1024


def _headers_fit(request: Request) -> None:
    if sum(len(k) + len(v) for k, v in request.scope["headers"]) > MAX_HEADER_BYTES:
        raise GatewayError(431, "request headers too large")


def _route(request: Request, state: GatewayState, path: str) -> str:
    # Dot segments could make one service's prefix reach another's path after normalising.
    segments = path.split("/")
    if "." in segments or ".." in segments:
        raise GatewayError(400, "path must not contain . or .. segments")
    found = state.routes.lookup(path)
    if found is None:
        raise GatewayError(404, "no route for this path")
    prefix, upstream = found
    # The log line's route: the prefix, never the raw path (ids and junk stay out of logs).
    request.state.route = prefix + "/*"
    return upstream


async def handle(request: Request) -> Response:
    """Every tenant request (anything that is not /admin, /healthz, /readyz, /metrics)."""
    state: GatewayState = request.state.gateway
    settings = state.settings
    _headers_fit(request)
    upstream = _route(request, state, request.scope["path"])

    claims = identity.identify(
        request.headers, modes=settings.GATEWAY_AUTH_MODES, base_domain=settings.GATEWAY_BASE_DOMAIN
    )
    # An unknown key or slug costs a PostgreSQL query only within the key guard's budget.
    client = request.client.host if request.client else ""
    credential_tenant_id = await identity.authenticate(
        request.headers,
        modes=settings.GATEWAY_AUTH_MODES,
        jwt_secret=settings.JWT_SECRET,
        key_owner=state.key_guard.guard(state.directory.key_owner, client=client),
    )
    tenant_id = await identity.decide_tenant(
        claims,
        credential_tenant_id=credential_tenant_id,
        modes=settings.GATEWAY_AUTH_MODES,
        slug_to_id=state.key_guard.guard(state.directory.tenant_id_for_slug, client=client),
    )
    tenant = await validate_tenant(state.directory, tenant_id)
    request.state.tenant_id = tenant.id

    limit_headers = await state.limiter.enforce(
        tenant_id=tenant.id, per_second=state.limiter.limit_for(tenant.rate_limit_per_second)
    )

    # Held from here until the response is sent, fails, or the client hangs up.
    slot = await state.admission.admit(tenant.id, cap=state.admission.cap_for(tenant.max_in_flight))

    # The signature covers the exact target that is forwarded, byte for byte.
    target = request_target(proxy.raw_path(request.scope), request.scope["query_string"])
    signed = sign_headers(
        settings.INTERNAL_SIGNING_SECRET,
        tenant_id=tenant.id,
        request_id=request.state.request_id,
        method=request.method,
        target=target,
    )

    try:
        response = await hangup.abandon_on_hangup(
            request,
            lambda req: proxy.forward(
                req,
                session=state.session,
                url=upstream + target,
                # traceparent is end to end and outside the signature: this hop is the parent.
                extra_headers={**signed, "traceparent": req.state.trace.traceparent()},
                response_headers=limit_headers,
            ),
        )
    except BaseException:
        slot.release()
        raise
    return slot.release_after(response)
