"""Database URLs as users write them, turned into what SQLAlchemy + psycopg2 need."""

from __future__ import annotations

from sqlalchemy.engine import URL, make_url

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


def derive_app_url(owner_url: str | URL, *, role: str = APP_ROLE_DEFAULT) -> URL:
    """The restricted role's URL: the owner's server, database and password, another user."""
    parsed = make_url(owner_url) if isinstance(owner_url, str) else owner_url
    return parsed.set(username=role)


def plain(url: URL) -> str:
    """A URL as ``psql`` and users write it (``postgresql://``), password included."""
    return url.set(drivername="postgresql").render_as_string(hide_password=False)
