"""Settings of the migration job: the bootstrap URL and the three roles it provisions."""

from __future__ import annotations

import re
import sys

from pydantic import ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import URL, make_url

from services.tenancy.dburl import (
    APP_ROLE_DEFAULT,
    GATEWAY_ROLE_DEFAULT,
    OWNER_ROLE_DEFAULT,
    derive_role_url,
    to_psycopg2,
)
from services.tenancy.placements import SHARED, parse_tenant_databases
from services.tenancy.settings import stop_on_bad_setting

_ROLE_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
# Setting name -> the role's default name when the setting is unset.
ROLE_SETTINGS = {
    "OWNER_DATABASE_URL": OWNER_ROLE_DEFAULT,
    "GATEWAY_DATABASE_URL": GATEWAY_ROLE_DEFAULT,
    "APP_DATABASE_URL": APP_ROLE_DEFAULT,
}


class MigrateSettings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", case_sensitive=True)

    # The bootstrap connection: a superuser's, or (once the roles exist) the owner's.
    DATABASE_URL: str
    OWNER_DATABASE_URL: str | None = None
    GATEWAY_DATABASE_URL: str | None = None
    APP_DATABASE_URL: str | None = None
    # Extra placements (SPEC §11): each gets the same roles, schema and RLS as DATABASE_URL's.
    TENANT_DATABASES: str | None = None

    @field_validator("TENANT_DATABASES")
    @classmethod
    def _placements(cls, value: str | None) -> str | None:
        parse_tenant_databases(value)
        return value

    @field_validator("DATABASE_URL", *ROLE_SETTINGS)
    @classmethod
    def _postgres_url(cls, value: str | None) -> str | None:
        if value is not None:
            to_psycopg2(value)
        return value

    @classmethod
    def load(cls) -> MigrateSettings:
        """Read the environment; a malformed variable stops the process with one line."""
        try:
            settings = cls()  # type: ignore[call-arg]  # read from the environment
        except ValidationError as exc:
            stop_on_bad_setting("migrate", exc)
        settings.check_roles()
        return settings

    def owner_url(self) -> URL:
        """The bootstrap connection (named `owner_url` for the tests and tools that use it)."""
        return to_psycopg2(self.DATABASE_URL, application_name="migrate")

    @property
    def placements(self) -> list[str]:
        """`shared`, then every TENANT_DATABASES name, in the order given."""
        return [SHARED, *parse_tenant_databases(self.TENANT_DATABASES)]

    def bootstrap_url(self, placement: str = SHARED) -> URL:
        """The bootstrap connection to `placement`: its URL, with DATABASE_URL's user when it
        names none (a placement on the same server needs no credentials of its own)."""
        if placement == SHARED:
            return self.owner_url()
        given = make_url(parse_tenant_databases(self.TENANT_DATABASES)[placement])
        if not given.username:
            shared = make_url(self.DATABASE_URL)
            given = given.set(username=shared.username, password=shared.password)
        return to_psycopg2(given, application_name="migrate")

    def role_url(self, setting: str) -> URL:
        """The URL of the role `setting` names: as given, else derived from DATABASE_URL."""
        given = getattr(self, setting)
        if given:
            return make_url(given)
        return derive_role_url(self.DATABASE_URL, role=ROLE_SETTINGS[setting])

    def app_url(self) -> URL:
        return self.role_url("APP_DATABASE_URL")

    def _role(self, setting: str) -> str:
        role = self.role_url(setting).username or ""
        if not _ROLE_NAME.match(role):
            sys.exit(
                f"migrate: invalid setting {setting}: role name {role!r} is not a plain identifier"
            )
        return role

    @property
    def owner_role(self) -> str:
        return self._role("OWNER_DATABASE_URL")

    @property
    def gateway_role(self) -> str:
        return self._role("GATEWAY_DATABASE_URL")

    @property
    def app_role(self) -> str:
        return self._role("APP_DATABASE_URL")

    def check_roles(self) -> None:
        """Three different roles; only the owner may be DATABASE_URL's own user."""
        bootstrap = self.owner_url().username
        seen: dict[str, str] = {}
        for setting in ROLE_SETTINGS:
            role = self._role(setting)
            if role in seen:
                sys.exit(
                    f"migrate: invalid setting {setting}: it names role {role}, "
                    f"as {seen[role]} does; each role must be its own"
                )
            seen[role] = setting
            if setting != "OWNER_DATABASE_URL" and role == bootstrap:
                sys.exit(
                    f"migrate: invalid setting {setting}: it must name a role other than "
                    "the owner (DATABASE_URL's user)"
                )
