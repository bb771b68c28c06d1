"""Bodies of the admin API."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from gateway.store import KeyRecord, TenantRecord

TenantName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Slug = Annotated[str, StringConstraints(pattern=r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")]
# 0 = no limit (as DEFAULT_RATE_LIMIT_PER_SECOND=0); null = use the default.
RateLimit = Annotated[int, Field(ge=0, le=1_000_000)]
# 0 = no cap; null = TENANT_MAX_IN_FLIGHT.
MaxInFlight = Annotated[int, Field(ge=0, le=100_000)]
# null = the services' default statement timeout; at most one hour.
StatementTimeoutMs = Annotated[int, Field(gt=0, le=3_600_000)]
PlacementName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,31}$")]


class TenantCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: TenantName
    slug: Slug | None = None
    rate_limit_per_second: RateLimit | None = None
    max_in_flight: MaxInFlight | None = None
    statement_timeout_ms: StatementTimeoutMs | None = None
    # `shared` or a TENANT_DATABASES name (an unknown one: 422, checked by the route).
    placement: PlacementName = "shared"


class TenantPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: TenantName | None = None
    status: Literal["active", "suspended"] | None = None
    rate_limit_per_second: RateLimit | None = None
    max_in_flight: MaxInFlight | None = None
    statement_timeout_ms: StatementTimeoutMs | None = None

    @model_validator(mode="before")
    @classmethod
    def _no_null_name_or_status(cls, data: object) -> object:
        # Only the limits may be null (= back to the default); a null name is a mistake.
        if isinstance(data, dict):
            for field in ("name", "status"):
                if field in data and data[field] is None:
                    raise ValueError(f"{field} cannot be null")
        return data

    def changes(self) -> dict[str, object]:
        """Only the fields the client sent; a limit sent as null resets to the default."""
        return self.model_dump(include=self.model_fields_set)


class TenantOut(BaseModel):
    id: int
    name: str
    slug: str
    status: str
    rate_limit_per_second: int | None
    max_in_flight: int | None
    statement_timeout_ms: int | None
    placement: str
    created_at: dt.datetime

    @classmethod
    def of(cls, tenant: TenantRecord) -> TenantOut:
        """From the store's record."""
        return cls(**tenant.to_json())


class TenantCreated(TenantOut):
    api_key: str
    api_key_id: int


class KeyCreated(BaseModel):
    id: int
    api_key: str
    prefix: str
    created_at: dt.datetime

    @classmethod
    def of(cls, key: KeyRecord, clear: str) -> KeyCreated:
        """From the store's record and the key in clear (shown this once)."""
        return cls(id=key.id, api_key=clear, prefix=key.prefix, created_at=key.created_at)
