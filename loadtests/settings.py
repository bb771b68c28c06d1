"""Settings of the load tests (environment variables), validated before any load is sent."""

from __future__ import annotations

import re
import sys
from pathlib import Path

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

REPORTS_DIR_DEFAULT = Path(__file__).resolve().parent / "reports"
# Locust's --run-time syntax: 90, 90s, 2m, 1h30m.
_RUN_TIME = re.compile(r"^(\d+|(\d+h)?(\d+m)?(\d+s)?)$")
# The attack scenarios of `make load-noisy` (loadtests/attackers.py), by name.
ATTACKS = ("slow_body", "heavy", "random_keys")


class LoadSettings(BaseSettings):
    """`make load` / `make load-noisy` settings (environment variables)."""

    model_config = SettingsConfigDict(extra="ignore", case_sensitive=True)

    LOCUST_HOST: str = "http://127.0.0.1:8000"
    # Where the admin API is, when the gateway serves it on an internal listener (compose:
    # http://gateway:9000, or http://localhost:9000 from the host). Default: LOCUST_HOST.
    LOAD_ADMIN_URL: str | None = None
    ADMIN_TOKEN: str | None = None
    KIT_DATA_DIR: Path = Path(".data")
    LOAD_TIME: str = "45s"
    LOAD_USERS: int = Field(default=25, ge=1, le=10_000)
    LOAD_SPAWN_RATE: float = Field(default=10.0, gt=0)
    LOAD_TENANTS: int = Field(default=10, ge=1, le=1_000)
    LOAD_KEEP: bool = False
    # Chosen from what a 2-core machine reaches with the defaults (docs/load-and-bench.md).
    LOAD_P95_MS: int = Field(default=500, ge=1)
    # High enough that the normal load is never throttled: the load test measures latency,
    # the rate limiter has its own tests and the noisy-neighbour scenario.
    LOAD_RATE_LIMIT_PER_SECOND: int = Field(default=10_000, ge=1)
    LOAD_REPORTS_DIR: Path = REPORTS_DIR_DEFAULT
    # Noisy neighbour: one tenant floods far above its own (low) limit.
    LOAD_NOISY_PHASE_TIME: str = "30s"
    LOAD_FLOOD_USERS: int = Field(default=2, ge=1, le=1_000)
    LOAD_FLOOD_RPS_PER_USER: float = Field(default=50.0, gt=0)
    LOAD_FLOOD_RATE_LIMIT_PER_SECOND: int = Field(default=10, ge=1)
    # Attacks (`python -m loadtests --attacks`, in `make load-noisy`): each scenario runs
    # against a stack with TENANT_FAIRNESS=on and one with off, which it starts itself.
    LOAD_ATTACKS: str = "slow_body,heavy,random_keys"
    LOAD_ATTACK_PHASE_TIME: str = "20s"
    LOAD_SLOW_BODY_USERS: int = Field(default=30, ge=1, le=1_000)
    LOAD_SLOW_BODY_SECONDS: float = Field(default=12.0, gt=0)
    LOAD_HEAVY_USERS: int = Field(default=48, ge=1, le=1_000)
    LOAD_HEAVY_ROWS: int = Field(default=300, ge=1, le=100_000)
    LOAD_RANDOM_KEY_USERS: int = Field(default=4, ge=1, le=1_000)
    LOAD_RANDOM_KEY_RPS_PER_USER: float = Field(default=100.0, gt=0)
    # Set by `python -m loadtests --noisy` for its Locust runs, not by users: tenants created
    # once for both phases, where each phase writes its figures, which tenant floods.
    LOAD_TENANTS_FILE: Path | None = None
    LOAD_SUMMARY_JSON: Path | None = None
    LOAD_FLOOD_TENANT: str | None = None
    # Test-only: one user of tenant-01 holds tenant-02's key while still expecting
    # tenant-01's rows, so real rows of another tenant reach the cross-tenant check.
    LOAD_PLANT_CROSS_TENANT: bool = False

    @field_validator("LOCUST_HOST", "LOAD_ADMIN_URL")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not re.match(r"^https?://[^/\s]+/?$", value):
            raise ValueError("expected http(s)://host[:port], e.g. http://127.0.0.1:8000")
        return value.rstrip("/")

    def admin_url(self, host: str | None = None) -> str:
        """The admin API's origin: LOAD_ADMIN_URL, else the load's target host."""
        return self.LOAD_ADMIN_URL or (host or self.LOCUST_HOST).rstrip("/")

    @field_validator("LOAD_ATTACKS")
    @classmethod
    def _attacks(cls, value: str) -> str:
        names = [n.strip() for n in value.split(",") if n.strip()]
        unknown = set(names) - set(ATTACKS)
        if not names or unknown:
            raise ValueError(f"expected a comma list of {', '.join(ATTACKS)}")
        return ",".join(names)

    @property
    def attacks(self) -> list[str]:
        """The attack scenarios to run, in order."""
        return self.LOAD_ATTACKS.split(",")

    @field_validator("LOAD_TIME", "LOAD_NOISY_PHASE_TIME", "LOAD_ATTACK_PHASE_TIME")
    @classmethod
    def _run_time(cls, value: str) -> str:
        if not value or not _RUN_TIME.match(value):
            raise ValueError("expected a duration such as 45s, 2m or 1h30m")
        return value

    @classmethod
    def load(cls) -> LoadSettings:
        """Read the environment; a malformed variable stops the process with one line."""
        try:
            return cls()
        except ValidationError as exc:
            err = exc.errors()[0]
            name = err["loc"][0] if err["loc"] else "settings"
            sys.exit(f"loadtests: invalid setting {name}: {err['msg']}")


def resolve_admin_token(settings: LoadSettings) -> str:
    """ADMIN_TOKEN, else the one `make run` uses, read from $KIT_DATA_DIR."""
    if settings.ADMIN_TOKEN:
        return settings.ADMIN_TOKEN
    missing = ValueError(
        f"ADMIN_TOKEN is not set and no `make run` token is kept in {settings.KIT_DATA_DIR} "
        "(set ADMIN_TOKEN to the admin token `make run` printed)"
    )
    try:
        # The kit is developer tooling: a Locust image ships without it and passes the token.
        from kit.datadir import DataDir, read_env_file
    except ImportError:
        raise missing from None
    data = DataDir(settings.KIT_DATA_DIR)
    # The running stack's own record first: it holds an exported token too.
    running = data.running_stack() or {}
    token = running.get("ADMIN_TOKEN") or read_env_file(data.secrets_file).get("ADMIN_TOKEN")
    if token:
        return token
    raise missing
