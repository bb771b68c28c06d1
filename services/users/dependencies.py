"""Request-level dependencies of the users routes: the user in the path, the parsed body."""

from __future__ import annotations

import json
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Path, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError

from services.tenancy.context import SessionDep, TenantDep
from services.users import service
from services.users.models import User
from services.users.schemas import UserCreate, UserUpdate

_FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
Body = TypeVar("Body", bound=BaseModel)
# Ids are bigint: a larger number names no user and is refused before reaching PostgreSQL.
MAX_ID = 2**63 - 1


def valid_user_id(session: SessionDep, user_id: Annotated[int, Path(ge=1, le=MAX_ID)]) -> User:
    """The current tenant's user named in the path; `UserNotFound` (404) otherwise."""
    return service.get_user(session, user_id)


async def _body(request: Request, model: type[Body]) -> Body:
    # Parsed only here, after the signature check this depends on: an unsigned request is
    # refused before its body is parsed. (tenancy.body has already received it whole.)
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    data: Any
    if content_type in _FORM_TYPES:
        form = await request.form()
        # The tutorial posts `name=Alice&email=`: an empty form field means "not given".
        data = {k: v for k, v in form.items() if isinstance(v, str) and v != ""}
    else:
        raw = await request.body()
        try:
            data = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise RequestValidationError(
                [{"type": "json_invalid", "loc": ("body",), "msg": f"invalid JSON: {exc}"}]
            ) from None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_context=False)
        raise RequestValidationError(
            [{**err, "loc": ("body", *err["loc"])} for err in errors]
        ) from None


async def user_create_body(request: Request, _context: TenantDep) -> UserCreate:
    """POST body as JSON or form fields."""
    return await _body(request, UserCreate)


async def user_update_body(request: Request, _context: TenantDep) -> UserUpdate:
    """PATCH body as JSON or form fields."""
    return await _body(request, UserUpdate)


UserDep = Annotated[User, Depends(valid_user_id)]
UserCreateDep = Annotated[UserCreate, Depends(user_create_body)]
UserUpdateDep = Annotated[UserUpdate, Depends(user_update_body)]
