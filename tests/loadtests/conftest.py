"""Fixtures shared by the bench's tests."""

from __future__ import annotations

import shutil

import pytest

from bench import generator

# wrk where installed (CI installs it); the Python fallback everywhere.
GENERATORS = ["wrk", "python"] if shutil.which("wrk") else ["python"]


@pytest.fixture(params=GENERATORS)
def load_generator(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each test once per load generator this machine has."""
    if request.param == "python":
        monkeypatch.setattr(generator, "wrk_binary", lambda: None)
    return str(request.param)
