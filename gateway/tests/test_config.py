"""Settings: parsed and validated at start; a malformed one stops the process with one line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError
from sqlalchemy.engine import make_url

from gateway.config import Settings, parse_routes
from kit.servers import RedisServer

ROOT = Path(__file__).resolve().parents[2]
VALID = {
    "DATABASE_URL": "postgresql://owner@127.0.0.1:5/db",
    "ADMIN_TOKEN": "a" * 32,
    "INTERNAL_SIGNING_SECRET": "s" * 32,
}


def settings(**env: str) -> Settings:
    return Settings(**{**VALID, **env})  # type: ignore[arg-type]


def test_routes_default_to_users_service_url() -> None:
    assert settings().routes == {"/users": "http://127.0.0.1:8001"}
    assert settings(USERS_URL="http://10.0.0.5:9000").routes == {"/users": "http://10.0.0.5:9000"}


def test_gateway_routes_map_prefixes_to_upstream_origins() -> None:
    routes = parse_routes(" /users=http://u:1 , /orders/=http://o:2/ ,/billing/v2=https://b ")
    assert routes == {"/users": "http://u:1", "/orders": "http://o:2", "/billing/v2": "https://b"}


@pytest.mark.parametrize(
    "raw",
    [
        "users=http://u:1",
        "/users",
        "/users=ftp://u",
        "/users=http://u:1/base",
        "/a=http://x,/a=http://y",
        "",
    ],
)
def test_malformed_routes_are_refused(raw: str) -> None:
    with pytest.raises(ValueError):
        parse_routes(raw)


def test_auth_modes_are_a_comma_list_of_known_modes() -> None:
    s = settings(GATEWAY_AUTH_MODES="api_key, header", JWT_SECRET="j" * 32)
    assert {"api_key", "header"} == s.GATEWAY_AUTH_MODES
    assert s.credential_modes == {"api_key"}
    with pytest.raises(ValidationError):
        settings(GATEWAY_AUTH_MODES="api_key,password")


def test_default_modes_without_jwt_secret_leave_jwt_off() -> None:
    assert {"api_key"} == settings().GATEWAY_AUTH_MODES
    assert {"api_key", "jwt"} == settings(JWT_SECRET="j" * 32).GATEWAY_AUTH_MODES


def test_modes_that_need_a_setting_refuse_to_start_without_it() -> None:
    with pytest.raises(ValidationError, match="JWT_SECRET"):
        settings(GATEWAY_AUTH_MODES="jwt")
    with pytest.raises(ValidationError, match="GATEWAY_BASE_DOMAIN"):
        settings(GATEWAY_AUTH_MODES="subdomain")


def test_secrets_are_required_and_not_trivially_short() -> None:
    with pytest.raises(ValidationError, match="ADMIN_TOKEN"):
        Settings(DATABASE_URL=VALID["DATABASE_URL"], INTERNAL_SIGNING_SECRET="s" * 32)  # type: ignore[call-arg]
    with pytest.raises(ValidationError):
        settings(INTERNAL_SIGNING_SECRET="short")
    with pytest.raises(ValidationError):
        settings(JWT_SECRET="shorter-than-32-bytes")


def run_gateway(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway"],
        env={"PATH": "/usr/bin:/bin", **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_a_malformed_setting_stops_the_gateway_process_with_exit_2_and_one_line() -> None:
    # The wiring, once, in a real process; the other cases go through the same function
    # (Settings.load -> stop_on_bad_setting) in-process below.
    result = run_gateway({**VALID, "GATEWAY_PORT": "eighty"})
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("gateway: invalid setting GATEWAY_PORT: ")


def _load_refusal(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], env: dict[str, str]
) -> str:
    """What Settings.load prints (one line) when it stops with exit 2, from exactly `env`."""
    for name in Settings.model_fields:
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SystemExit) as stopped:
        Settings.load()
    assert stopped.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("GATEWAY_AUTH_MODES", "api_key,telepathy"),
        ("GATEWAY_ROUTES", "/users"),
        ("DEFAULT_RATE_LIMIT_PER_SECOND", "-1"),
        ("TENANT_CACHE_TTL_SECONDS", "0"),
        ("REDIS_URL", "http://127.0.0.1:6379"),
        ("DATABASE_URL", "mysql://x@y/z"),
        ("ADMIN_TOKEN", "tiny"),
        ("REQUEST_BODY_TIMEOUT_SECONDS", "0"),
        ("GATEWAY_INTERNAL_PORT", "70000"),
        ("TENANT_MAX_IN_FLIGHT", "-1"),
        ("GATEWAY_MAX_IN_FLIGHT", "lots"),
        ("GATEWAY_QUEUE_TIMEOUT_SECONDS", "0"),
        ("KEY_LOOKUPS_PER_SECOND", "-3"),
        ("KEY_LOOKUPS_PER_CLIENT_PER_SECOND", "1.5"),
        ("TENANT_FAIRNESS", "maybe"),
        ("GATEWAY_CACHE_SECRET", "short"),
        ("GATEWAY_REPLICAS", "0"),
        ("TENANT_DATABASES", "eu"),
        ("TENANT_DATABASES", "shared=postgresql://h/d"),
        ("REDIS_MAX_CONNECTIONS", "none"),
        ("RATE_LIMIT_LEASE_MAX", "0"),
        ("LOG_FORMAT", "yaml"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4318"),
        ("OPENAPI_REFRESH_SECONDS", "0"),
    ],
)
def test_malformed_setting_stops_the_gateway_with_one_line_naming_it(
    name: str, value: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    line = _load_refusal(monkeypatch, capsys, {**VALID, name: value})
    assert line.startswith(f"gateway: invalid setting {name}: ")


def test_missing_required_setting_is_named(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    env = {k: v for k, v in VALID.items() if k != "INTERNAL_SIGNING_SECRET"}
    line = _load_refusal(monkeypatch, capsys, env)
    assert line == "gateway: invalid setting INTERNAL_SIGNING_SECRET: Field required"


def test_gateway_and_bootstrap_urls_naming_different_databases_are_refused() -> None:
    with pytest.raises(ValidationError, match="GATEWAY_DATABASE_URL: names another database"):
        settings(
            DATABASE_URL="postgresql://postgres:pw@db:5432/one",
            GATEWAY_DATABASE_URL="postgresql://tenantkit_gateway:pw@db:5432/two",
        )


def test_the_gateway_role_is_derived_from_database_url_with_its_own_password() -> None:
    url = make_url(settings(DATABASE_URL="postgresql://postgres:pw@db:5432/tk").database_url())
    assert (url.username, url.host, url.database) == ("tenantkit_gateway", "db", "tk")
    assert url.password not in (None, "pw")


def test_internal_listener_is_off_when_unset_or_empty_and_must_not_share_the_port() -> None:
    assert settings().GATEWAY_INTERNAL_PORT is None
    # compose writes `GATEWAY_INTERNAL_PORT: ""` to mean "one port", as a shell would.
    assert settings(GATEWAY_INTERNAL_PORT="").GATEWAY_INTERNAL_PORT is None
    assert settings(GATEWAY_INTERNAL_PORT="9000").GATEWAY_INTERNAL_PORT == 9000
    with pytest.raises(ValidationError, match="GATEWAY_INTERNAL_PORT"):
        settings(GATEWAY_PORT="9000", GATEWAY_INTERNAL_PORT="9000")


def test_jwt_audience_and_issuer_are_optional_and_empty_means_unset() -> None:
    assert (settings().JWT_AUDIENCE, settings().JWT_ISSUER) == (None, None)
    configured = settings(JWT_AUDIENCE="api", JWT_ISSUER="")
    assert (configured.JWT_AUDIENCE, configured.JWT_ISSUER) == ("api", None)
    assert settings().REQUEST_BODY_TIMEOUT_SECONDS == 10


@pytest.mark.parametrize("credentials", ["gateway:not-the-password@", ""])
def test_redis_refusing_the_credentials_stops_the_gateway_naming_redis_url(
    redis_server: RedisServer, credentials: str
) -> None:
    url = f"redis://{credentials}127.0.0.1:{redis_server.port}/0"
    result = run_gateway({**VALID, "REDIS_URL": url})
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("gateway: invalid setting REDIS_URL: Redis refused it")
    assert "not-the-password" not in result.stderr
