"""The users resource (SPEC §6). Thin: parse, call the service, shape the answer."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response, status

from services.tenancy.context import SessionDep, TenantDep, read_as_tenant
from services.users import service
from services.users.dependencies import MAX_ID, UserCreateDep, UserDep, UserUpdateDep
from services.users.schemas import Problem, UserCreate, UserOut, UserUpdate

router = APIRouter(tags=["users"])

_STATUS_DOCS: dict[int, str] = {
    status.HTTP_401_UNAUTHORIZED: "No valid signed tenant context",
    status.HTTP_404_NOT_FOUND: "No such user in this tenant (or the tenant was just deleted)",
    status.HTTP_409_CONFLICT: "Email already used in this tenant",
    status.HTTP_422_UNPROCESSABLE_CONTENT: "Invalid input",
    status.HTTP_503_SERVICE_UNAVAILABLE: "Database unavailable",
}


def _responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the error statuses a route can answer (422 keeps FastAPI's schema)."""
    docs: dict[int | str, dict[str, Any]] = {}
    for code in codes:
        docs[code] = {"description": _STATUS_DOCS[code]}
        if code != status.HTTP_422_UNPROCESSABLE_CONTENT:
            docs[code]["model"] = Problem
    return docs


def _body_doc(model: type[UserCreate] | type[UserUpdate]) -> dict[str, Any]:
    # The body is parsed by a dependency (JSON or form), so FastAPI cannot infer it: say it.
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": schema},
                "application/x-www-form-urlencoded": {"schema": schema},
            },
        }
    }


def _next_link(request: Request, *, after: int, limit: int) -> str:
    # Relative to the path the client used: the gateway forwards it unchanged, and an
    # absolute URL would name this service's internal address.
    return f'<{request.url.path}?limit={limit}&after={after}>; rel="next"'


@router.get(
    "/users",
    response_model=list[UserOut],
    responses=_responses(401, 422, 503),
    summary="List the tenant's users by id",
)
async def list_users(
    context: TenantDep,
    request: Request,
    response: Response,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    after: Annotated[int | None, Query(ge=0, le=MAX_ID, description="Only ids above this")] = None,
) -> Any:
    # The hot reads are `async def` and read on the event loop (read_as_tenant: one round
    # trip, no worker thread, no session dependency); `response_model` validates and
    # serialises the rows once.
    users, more = await read_as_tenant(
        request, context, service.read_users, after=after, limit=limit
    )
    if more:
        response.headers["Link"] = _next_link(request, after=users[-1]["id"], limit=limit)
    return users


@router.post(
    "/users",
    status_code=status.HTTP_201_CREATED,
    response_model=UserOut,
    responses=_responses(401, 404, 409, 422, 503),
    openapi_extra=_body_doc(UserCreate),
    summary="Create a user (JSON or form fields)",
)
def create_user(data: UserCreateDep, session: SessionDep) -> UserOut:
    return UserOut.model_validate(service.create_user(session, data=data))


@router.get(
    "/users/{user_id}",
    response_model=UserOut,
    responses=_responses(401, 404, 422, 503),
    summary="Get one user",
)
async def get_user(
    request: Request, context: TenantDep, user_id: Annotated[int, Path(ge=1, le=MAX_ID)]
) -> Any:
    return await read_as_tenant(request, context, service.read_user, user_id)


@router.patch(
    "/users/{user_id}",
    response_model=UserOut,
    responses=_responses(401, 404, 409, 422, 503),
    openapi_extra=_body_doc(UserUpdate),
    summary="Change a user's name or email",
)
def update_user(changes: UserUpdateDep, session: SessionDep, user: UserDep) -> UserOut:
    # The body is validated first (dependencies resolve in this order): an invalid body
    # is refused before the user lookup opens a transaction.
    return UserOut.model_validate(service.update_user(session, user, changes=changes))


@router.delete(
    "/users/{user_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=_responses(401, 404, 422, 503),
    summary="Delete a user",
)
def delete_user(session: SessionDep, user: UserDep) -> Response:
    service.delete_user(session, user)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
