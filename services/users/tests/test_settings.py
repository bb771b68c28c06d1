"""The users service's settings, as pure logic (the process-level refusals are in test_startup)."""

from __future__ import annotations

import pytest

from services.tenancy.dburl import derive_app_url, derive_gateway_url
from services.users.config import Settings

SECRET = "settings-tests-secret-0123456789"


def test_app_url_is_derived_from_the_owner_url_when_not_given() -> None:
    settings = Settings.load(
        {"DATABASE_URL": "postgresql://owner:pw@db:5432/tk", "INTERNAL_SIGNING_SECRET": SECRET}
    )
    url = settings.database_url()
    assert (url.username, url.host, url.database) == ("tenantkit_app", "db", "tk")
    # Its own password (issue 15: it used to be the owner's), the one migrations set.
    assert url.password not in (None, "pw")
    assert url.password == derive_app_url("postgresql://owner:pw@db:5432/tk").password
    assert url.password != derive_gateway_url("postgresql://owner:pw@db:5432/tk").password
    assert url.drivername == "postgresql+psycopg2"
    assert url.query["application_name"] == "users-service"


def test_app_database_url_wins_over_the_derived_one() -> None:
    settings = Settings.load(
        {
            "DATABASE_URL": "postgresql://owner:pw@db/tk",
            "APP_DATABASE_URL": "postgres://svc:s3@other:6432/tk",
            "INTERNAL_SIGNING_SECRET": SECRET,
        }
    )
    url = settings.database_url()
    assert (url.username, url.host, url.port) == ("svc", "other", 6432)


def test_defaults_listen_on_localhost_8001() -> None:
    settings = Settings.load(
        {"DATABASE_URL": "postgresql://o@h/d", "INTERNAL_SIGNING_SECRET": SECRET}
    )
    assert (settings.USERS_HOST, settings.USERS_PORT) == ("127.0.0.1", 8001)


def test_bad_setting_exits_2_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        Settings.load(
            {
                "DATABASE_URL": "postgresql://o@h/d",
                "INTERNAL_SIGNING_SECRET": SECRET,
                "USERS_PORT": "0",
            }
        )
    assert exited.value.code == 2
    assert capsys.readouterr().err.splitlines() == [
        "users-service: invalid setting USERS_PORT: Input should be greater than or equal to 1"
    ]


def test_bad_log_format_exits_2_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        Settings.load(
            {
                "DATABASE_URL": "postgresql://o@h/d",
                "INTERNAL_SIGNING_SECRET": SECRET,
                "LOG_FORMAT": "yaml",
            }
        )
    assert exited.value.code == 2
    assert capsys.readouterr().err.splitlines() == [
        "users-service: invalid setting LOG_FORMAT: Input should be 'json' or 'text'"
    ]
