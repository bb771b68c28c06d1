"""Database URLs as users write them, turned into what SQLAlchemy + psycopg2 need."""

from __future__ import annotations

import hashlib
import hmac

from sqlalchemy.engine import URL, make_url

# The three roles migrations provision (SPEC §7); each may be renamed by its own URL setting.
OWNER_ROLE_DEFAULT = "tenantkit_owner"
GATEWAY_ROLE_DEFAULT = "tenantkit_gateway"
APP_ROLE_DEFAULT = "tenantkit_app"

_POSTGRES_SCHEMES = {
    "postgres",
    "postgresql",
    "postgresql+psycopg2",
    "postgresql+psycopg",
    "postgresql+psycopg2cffi",
}


def to_psycopg2(url: str | URL, *, application_name: str | None = None) -> URL:
    """Select the psycopg2 driver explicitly.

    SQLAlchemy 2.1 maps a plain ``postgresql://`` URL to psycopg 3, which tenantkit does not
    ship; users (and ``make run``) write plain URLs, so the driver is chosen here.
    """
    parsed = make_url(url) if isinstance(url, str) else url
    if parsed.drivername not in _POSTGRES_SCHEMES:
        raise ValueError(f"not a PostgreSQL URL (scheme {parsed.drivername!r})")
    parsed = parsed.set(drivername="postgresql+psycopg2")
    if application_name:
        parsed = parsed.update_query_dict({"application_name": application_name})
    return parsed


def derive_role_url(bootstrap_url: str | URL, *, role: str) -> URL:
    """`role`'s URL when only DATABASE_URL is given: same server and database, own password.

    The password is an HMAC of the bootstrap password and the role's name: distinct per
    role, and knowing it tells nothing about the bootstrap password (or the other roles').
    No bootstrap password (trust/peer authentication) gives none either.
    """
    parsed = make_url(bootstrap_url) if isinstance(bootstrap_url, str) else bootstrap_url
    password = None
    if parsed.password:
        key = str(parsed.password).encode()
        password = hmac.new(key, f"tenantkit-role:{role}".encode(), hashlib.sha256).hexdigest()
    return parsed.set(username=role, password=password)


def derive_app_url(bootstrap_url: str | URL, *, role: str = APP_ROLE_DEFAULT) -> URL:
    """The services' role's URL derived from DATABASE_URL (see `derive_role_url`)."""
    return derive_role_url(bootstrap_url, role=role)


def derive_gateway_url(bootstrap_url: str | URL, *, role: str = GATEWAY_ROLE_DEFAULT) -> URL:
    """The gateway role's URL derived from DATABASE_URL (see `derive_role_url`)."""
    return derive_role_url(bootstrap_url, role=role)


def plain(url: URL) -> str:
    """A URL as ``psql`` and users write it (``postgresql://``), password included."""
    return url.set(drivername="postgresql").render_as_string(hide_password=False)
