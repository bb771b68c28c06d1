"""admin_writes.change: a change that outlives its deadline is invalidated when it commits."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from gateway import admin_writes
from gateway.errors import DependencyDown


class RecordingInvalidator:
    """Stands in for Invalidator: records what would be published, and when."""

    def __init__(self) -> None:
        self.published: list[tuple[str, list[str]]] = []

    async def publish(self, keys: list[str], messages: list[str]) -> None:
        self.published.append(("now", messages))

    def publish_soon(self, keys: list[str], messages: list[str]) -> None:
        self.published.append(("late", messages))


def slow_commit(outcome: Any) -> Any:
    time.sleep(0.3)
    if isinstance(outcome, Exception):
        raise outcome
    return outcome


async def run(outcome: Any) -> tuple[BaseException | None, list[tuple[str, list[str]]]]:
    invalidator = RecordingInvalidator()
    error: BaseException | None = None
    try:
        await admin_writes.change(
            slow_commit,
            outcome,
            invalidator=invalidator,  # type: ignore[arg-type]
            plan=lambda result: ([], [f"tenant:{result}", "apikey:ab"]),
            unknown=([], ["tenant:7"]),
        )
    except DependencyDown as exc:
        error = exc
    await asyncio.sleep(0.6)  # the thread finishes meanwhile
    return error, invalidator.published


def test_a_change_past_its_deadline_is_invalidated_now_and_again_when_it_commits(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(admin_writes, "CALL_DEADLINE_SECONDS", 0.05)
    error, published = asyncio.run(run(7))
    assert isinstance(error, DependencyDown) and error.status == 503
    assert published == [("now", ["tenant:7"]), ("late", ["tenant:7", "apikey:ab"])]


def test_a_change_that_fails_after_its_deadline_publishes_nothing_more(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(admin_writes, "CALL_DEADLINE_SECONDS", 0.05)
    error, published = asyncio.run(run(RuntimeError("rolled back")))
    assert isinstance(error, DependencyDown)
    assert published == [("now", ["tenant:7"])]


def test_a_change_within_its_deadline_is_invalidated_once_with_its_result() -> None:
    error, published = asyncio.run(run(9))
    assert error is None
    assert published == [("now", ["tenant:9", "apikey:ab"])]
