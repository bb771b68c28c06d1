"""A held tenant's requests wait for the release, and never longer than the bound: a mover
that dies mid-cut-over (its release never sent) cannot hold a tenant for good."""

from __future__ import annotations

import asyncio
import time

from gateway.hold import Holds


def test_a_held_request_goes_on_at_the_release() -> None:
    async def scenario() -> tuple[bool, float]:
        holds = Holds(max_seconds=5)
        holds.apply("hold:7")
        started = time.monotonic()
        waiting = asyncio.create_task(holds.wait(7))
        await asyncio.sleep(0.05)
        holds.apply("release:7")
        return await waiting, time.monotonic() - started

    held, waited = asyncio.run(scenario())
    assert held and waited < 1


def test_a_hold_never_released_lapses_after_its_bound_for_every_request() -> None:
    async def scenario() -> tuple[float, float, bool]:
        holds = Holds(max_seconds=0.3)
        holds.apply("hold:7")
        started = time.monotonic()
        # Bounded here too: were the hold unbounded, the test fails instead of hanging.
        await asyncio.wait_for(asyncio.gather(holds.wait(7), holds.wait(7)), 3)
        first = time.monotonic() - started
        started = time.monotonic()
        later = await asyncio.wait_for(holds.wait(7), 3)
        return first, time.monotonic() - started, later

    first, second, later_held = asyncio.run(scenario())
    assert 0.25 < first < 2
    # Lapsed: the next request does not wait at all, and the tenant is no longer held.
    assert second < 0.05 and not later_held


def test_other_tenants_and_other_messages_are_not_held() -> None:
    async def scenario() -> bool:
        holds = Holds(max_seconds=5)
        holds.apply("hold:7")
        assert not holds.apply("invalidate:7")
        return await asyncio.wait_for(holds.wait(8), 1)

    assert asyncio.run(scenario()) is False
