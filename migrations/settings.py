"""Settings of the migration job: the owner URL and the restricted role it provisions."""

from __future__ import annotations

import re
import sys

from pydantic import ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import URL, make_url

from services.tenancy.dburl import derive_app_url, to_psycopg2
from services.tenancy.settings import stop_on_bad_setting

_ROLE_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


class MigrateSettings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", case_sensitive=True)

    DATABASE_URL: str
    APP_DATABASE_URL: str | None = None

    @field_validator("DATABASE_URL", "APP_DATABASE_URL")
    @classmethod
    def _postgres_url(cls, value: str | None) -> str | None:
        if value is not None:
            to_psycopg2(value)
        return value

    @classmethod
    def load(cls) -> MigrateSettings:
        """Read the environment; a malformed variable stops the process with one line."""
        try:
            return cls()
        except ValidationError as exc:
            stop_on_bad_setting("migrate", exc)

    def owner_url(self) -> URL:
        return to_psycopg2(self.DATABASE_URL, application_name="migrate")

    def app_url(self) -> URL:
        if self.APP_DATABASE_URL:
            return make_url(self.APP_DATABASE_URL)
        return derive_app_url(self.DATABASE_URL)

    @property
    def app_role(self) -> str:
        role = self.app_url().username or ""
        if not _ROLE_NAME.match(role):
            sys.exit(
                f"migrate: invalid setting APP_DATABASE_URL: role name {role!r} "
                "is not a plain identifier"
            )
        if role == self.owner_url().username:
            sys.exit(
                "migrate: invalid setting APP_DATABASE_URL: it must name a role other than "
                "the owner"
            )
        return role
