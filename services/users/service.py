"""The users rules, free of HTTP. No query here filters by tenant: the shared library's walls do."""

from __future__ import annotations

from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from services.tenancy.asyncread import TenantRead, TenantReader, tenant_read
from services.tenancy.constraints import domain_error_for
from services.users.models import User
from services.users.schemas import UserCreate, UserUpdate


class UserNotFound(Exception):
    """No user with this id for the current tenant (whether or not another tenant has one)."""


class DuplicateEmail(Exception):
    """Another user of the same tenant already has this email (compared case-insensitively)."""


class TenantGone(Exception):
    """The tenant was deleted while its request was on the way."""


# By the names the schema gives them (on Citus, a shard's copy carries a suffix: matched too).
# A tenant deleted after the gateway vouched for it: the id trigger's counter insert hits
# its foreign key first, the row's own would otherwise.
CONSTRAINT_ERRORS: dict[str, type[Exception]] = {
    "users_tenant_email_key": DuplicateEmail,
    "users_tenant_id_fkey": TenantGone,
    "tenant_row_ids_tenant_id_fkey": TenantGone,
}


def get_user(session: Session, user_id: int) -> User:
    """The current tenant's user `user_id`, or `UserNotFound`."""
    user = session.scalars(select(User).where(User.id == user_id)).one_or_none()
    if user is None:
        raise UserNotFound(user_id)
    return user


# The two hot reads in Core, for the event loop (services/tenancy/asyncread.py): the library
# adds the tenant predicate; rows come back as dicts. Writes (and the lookup before one,
# get_user) keep the ORM session above.
_USERS = User.__table__
# What UserOut shows (not email_normalized).
_COLUMNS = [_USERS.c[n] for n in ("id", "tenant_id", "name", "email", "created_at", "updated_at")]
_ONE: TenantRead = tenant_read(select(*_COLUMNS).where(_USERS.c.id == bindparam("user_id")))
_PAGE: TenantRead = tenant_read(
    select(*_COLUMNS)
    .where(_USERS.c.id > bindparam("after"))
    .order_by(_USERS.c.id)
    .limit(bindparam("limit"))
)


async def read_user(reader: TenantReader, user_id: int) -> dict[str, Any]:
    """`get_user` on the event loop: the tenant's user `user_id`, or `UserNotFound`."""
    rows = await reader.fetch(_ONE, user_id=user_id)
    if not rows:
        raise UserNotFound(user_id)
    return rows[0]


async def read_users(
    reader: TenantReader, *, after: int | None, limit: int
) -> tuple[list[dict[str, Any]], bool]:
    """Up to `limit` of the tenant's users with ids above `after`, by id; more to follow?"""
    # Ids start at 1, so "after 0" is "from the first".
    rows = await reader.fetch(_PAGE, after=after or 0, limit=limit + 1)
    return rows[:limit], len(rows) > limit


def create_user(session: Session, *, data: UserCreate) -> User:
    """Add a user to the current tenant (its tenant_id is stamped by the session)."""
    user = User(name=data.name, email=data.email)
    session.add(user)
    _flush(session)
    return user


def update_user(session: Session, user: User, *, changes: UserUpdate) -> User:
    """Apply the fields present in `changes`."""
    for field in changes.model_fields_set:
        setattr(user, field, getattr(changes, field))
    _flush(session)
    return user


def delete_user(session: Session, user: User) -> None:
    """Remove the user."""
    session.delete(user)
    _flush(session)


def _flush(session: Session) -> None:
    # Flush here, not at commit, so that a constraint violation becomes a domain error.
    try:
        session.flush()
    except IntegrityError as exc:
        domain_error = domain_error_for(exc, CONSTRAINT_ERRORS)
        if domain_error is None:
            raise
        raise domain_error from None
