"""The gateway's request path, in order: identify -> authenticate -> validate tenant ->
(wait out a move's cut-over) -> rate limit -> admit -> read body -> sign -> forward (once
more if a move's cut-over refused it). Each step is one call into the module that owns it."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from gateway import hangup, identity, moveretry, proxy
from gateway.body import read_body
from gateway.errors import GatewayError
from gateway.state import GatewayState
from gateway.tenants import TenantRecord, validate_tenant
from services.tenancy.signing import request_target

# uvicorn's parser sets no limit; nginx's default is 4 x 8 KiB. Anything bigger is refused
# before it is parsed further or copied upstream.
MAX_HEADER_BYTES = 32 * 1024


def _headers_fit(request: Request) -> None:
    if sum(len(k) + len(v) for k, v in request.scope["headers"]) > MAX_HEADER_BYTES:
        raise GatewayError(431, "request headers too large")


def _route(request: Request, state: GatewayState, path: str) -> tuple[str, str]:
    # Dot segments could make one service's prefix reach another's path after normalising.
    segments = path.split("/")
    if "." in segments or ".." in segments:
        raise GatewayError(400, "path must not contain . or .. segments")
    route = state.routes.route(path)
    if route is None:
        raise GatewayError(404, "no route for this path")
    # The log line's route: the prefix, never the raw path (ids and junk stay out of logs).
    request.state.route = route[0] + "/*"
    return route


async def handle(request: Request) -> Response:
    """Every tenant request (anything that is not /admin, /healthz, /readyz, /metrics)."""
    state: GatewayState = request.state.gateway
    settings = state.settings
    _headers_fit(request)
    destination, upstream = _route(request, state, request.scope["path"])

    claims = identity.identify(
        request.headers, modes=settings.GATEWAY_AUTH_MODES, base_domain=settings.GATEWAY_BASE_DOMAIN
    )
    # An unknown key or slug costs a PostgreSQL query only within the key guard's budget.
    client = request.client.host if request.client else ""
    credential_tenant_id = await identity.authenticate(
        request.headers,
        modes=settings.GATEWAY_AUTH_MODES,
        jwt_secret=settings.JWT_SECRET,
        jwt_audience=settings.JWT_AUDIENCE,
        jwt_issuer=settings.JWT_ISSUER,
        key_owner=state.key_guard.guard(state.directory.key_owner, client=client),
    )
    tenant_id = await identity.decide_tenant(
        claims,
        credential_tenant_id=credential_tenant_id,
        modes=settings.GATEWAY_AUTH_MODES,
        slug_to_id=state.key_guard.guard(state.directory.tenant_id_for_slug, client=client),
    )
    tenant = await validate_tenant(state.directory, tenant_id)
    if await state.holds.wait(tenant.id):  # a move's cut-over: then where it lives now
        tenant = await validate_tenant(state.directory, tenant_id)
    request.state.tenant_id = tenant.id  # from here on, the request counts as the tenant's

    limit_headers = await state.limiter.enforce(
        tenant_id=tenant.id, per_second=state.limiter.limit_for(tenant.rate_limit_per_second)
    )

    # Held from here until the response is sent, fails, or the client hangs up: a tenant's
    # slow bodies use up its own in-flight slots, not its neighbours'.
    slot = await state.admission.admit(tenant.id, cap=state.admission.cap_for(tenant.max_in_flight))
    try:
        # Read in full before signing (its hash is signed); no connection is held meanwhile.
        body = await read_body(request, timeout_seconds=settings.REQUEST_BODY_TIMEOUT_SECONDS)
    except BaseException:
        slot.release()
        raise

    # The signature covers the exact target and body that are forwarded, byte for byte.
    target = request_target(proxy.raw_path(request.scope), request.scope["query_string"])

    async def send(to: TenantRecord) -> Response:
        signed = state.signer.headers(
            tenant_id=to.id,
            request_id=request.state.request_id,
            method=request.method,
            target=target,
            destination=destination,
            body=body or b"",
            extra=to.signed_fields,
        )
        return await hangup.abandon_on_hangup(
            request,
            lambda req: proxy.forward(
                req,
                session=state.session,
                url=upstream + target,
                body=body,
                # traceparent is end to end and outside the signature: this hop is the parent.
                extra_headers={**signed, "traceparent": req.state.trace.traceparent()},
                response_headers=limit_headers,
            ),
        )

    try:
        response = await send(tenant)
        # Refused, having done nothing, by a placement the tenant moved out of: once more.
        if await moveretry.refused_by_move(request, state, tenant.id):
            response = await send(await validate_tenant(state.directory, tenant_id))
    except BaseException:
        slot.release()
        raise
    return slot.release_after(response)
