"""The users resource on the wire: request bodies in, response bodies out."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from email_validator import EmailNotValidError, validate_email
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
)

# PostgreSQL text cannot hold NUL; refusing it here keeps it a 422 rather than a 500.
Name = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=r"^[^\x00]*$")]


def _email(value: str) -> str:
    """A well-formed address, normalised; reserved example names (RFC 2606) included."""
    # Syntax only, no DNS. `acme.test`, `x.example`, `example.com` are what examples and
    # tests use, so they are accepted (test_environment admits `.test`); names that can
    # never be a mailbox (`.invalid`, `.localhost`, `.local`, `.onion`) stay refused.
    try:
        return validate_email(value, check_deliverability=False, test_environment=True).normalized
    except EmailNotValidError as exc:
        raise ValueError(f"value is not a valid email address: {exc}") from exc


Email = Annotated[str, StringConstraints(max_length=320), AfterValidator(_email)]


class UserCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name
    email: Email | None = None


class UserUpdate(BaseModel):
    """Only the fields present change; `"email": null` removes the email."""

    model_config = ConfigDict(extra="forbid")

    name: Name | None = None
    email: Email | None = None

    @field_validator("name")
    @classmethod
    def _name_is_not_removable(cls, value: str | None) -> str | None:
        if value is None:
            raise ValueError("name cannot be null")
        return value


class UserOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    tenant_id: int
    name: str
    email: str | None
    created_at: datetime
    updated_at: datetime


class Problem(BaseModel):
    """Every error answer: `{"detail": ...}`."""

    detail: str = Field(examples=["user not found"])
