"""How a service sets its tenant in PostgreSQL: fused into the first statement, or on its own.

`fused` (one round trip) is right for plain PostgreSQL. Citus forwards the whole message that
carried a `SET LOCAL` to the workers, which refuse it ("cannot execute a distributed query
from a query on a shard"), so there the tenant is set in a round trip of its own (`separate`).
`auto` (`TENANT_SETTING`'s default) looks for the citus extension once, at start.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from sqlalchemy import Engine, text

TenantSettingMode = Literal["auto", "fused", "separate"]
TenantSettingForm = Literal["fused", "separate"]

_CITUS_INSTALLED = text("SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus')")


@dataclass(frozen=True, slots=True)
class TenantSettingChoice:
    """What `TENANT_SETTING` asked for, whether Citus is there, and the form in use."""

    mode: TenantSettingMode
    citus: bool
    form: TenantSettingForm

    def describe(self) -> str:
        """One log line's worth: `separate (TENANT_SETTING=auto, Citus detected)`."""
        found = "Citus detected" if self.citus else "no Citus"
        return f"{self.form} (TENANT_SETTING={self.mode}, {found})"

    def as_details(self) -> dict[str, object]:
        """The same, for /readyz."""
        return {"mode": self.mode, "citus": self.citus, "form": self.form}


def citus_installed(engine: Engine) -> bool:
    """True when the database behind `engine` has the citus extension (any role can ask)."""
    with engine.connect() as conn:
        return bool(conn.execute(_CITUS_INSTALLED).scalar_one())


def choose_tenant_setting(engine: Engine, mode: TenantSettingMode) -> TenantSettingChoice:
    """Resolve `mode` against the database: `auto` means separate on Citus, fused elsewhere."""
    citus = citus_installed(engine)
    if mode == "auto":
        form: TenantSettingForm = "separate" if citus else "fused"
    else:
        form = mode
    return TenantSettingChoice(mode=mode, citus=citus, form=form)
