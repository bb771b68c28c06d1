"""Fixtures of the Citus suite; these tests exist only under `make test-citus`."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """Collect nothing here unless pytest runs with this folder's own pytest.ini.

    Plain `make test` reaches this folder through the project's testpaths; no Citus runs
    then, and these tests must be neither run nor reported skipped.
    """
    if config.inipath is None or config.inipath.resolve() != HERE / "pytest.ini":
        return True
    return None


@pytest.fixture(scope="session", autouse=True)
def _on_citus() -> None:
    """Refuse to run against anything but the coordinator that run.py prepared."""
    if not os.environ.get("E2E_DATABASE_URL") or os.environ.get("TK_CITUS") != "1":
        pytest.fail("no Citus cluster: run `make test-citus`")
