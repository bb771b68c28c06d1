"""The admission queue on its own: the per-tenant cap, round-robin turns, bounded waits."""

from __future__ import annotations

import asyncio

import pytest

from gateway.admission import Admission, Slot
from gateway.errors import GatewayError
from gateway.metrics import Metrics

A, B = 1, 2


def admission(
    *, capacity: int = 1, cap: int = 0, wait: float = 5.0, enabled: bool = True
) -> Admission:
    return Admission(
        default_cap=cap,
        capacity=capacity,
        queue_timeout_seconds=wait,
        metrics=Metrics(),
        enabled=enabled,
    )


def refused(metrics_owner: Admission, reason: str) -> float:
    value = metrics_owner._metrics.registry.get_sample_value(
        "gateway_admission_refused_total", {"reason": reason}
    )
    return value or 0.0


def test_a_one_request_tenant_is_admitted_ahead_of_another_tenants_backlog() -> None:
    async def run() -> list[int]:
        gate = admission(capacity=1)
        order: list[int] = []
        first = await gate.admit(A, cap=0)

        async def request(tenant_id: int) -> None:
            slot = await gate.admit(tenant_id, cap=0)
            order.append(tenant_id)
            await asyncio.sleep(0)
            slot.release()

        backlog = [asyncio.create_task(request(A)) for _ in range(100)]
        await asyncio.sleep(0)  # A's hundred are queued before B arrives
        lone = asyncio.create_task(request(B))
        await asyncio.sleep(0)
        first.release()
        await asyncio.gather(*backlog, lone)
        return order

    order = asyncio.run(run())
    # Round robin: B's one request goes right after A's next one, not after all hundred.
    assert order.index(B) <= 1
    assert len(order) == 101


def test_over_the_tenants_cap_is_429_at_once_and_other_tenants_pass() -> None:
    async def run() -> tuple[GatewayError, Slot, Admission]:
        gate = admission(capacity=0, cap=2)
        held = [await gate.admit(A, cap=2) for _ in range(2)]
        with pytest.raises(GatewayError) as info:
            await gate.admit(A, cap=2)
        other = await gate.admit(B, cap=2)
        assert gate.in_flight_of(A) == 2
        for slot in held:
            slot.release()
        assert gate.in_flight_of(A) == 0
        return info.value, other, gate

    error, other, gate = asyncio.run(run())
    assert error.status == 429
    assert error.headers["Retry-After"] == "1"
    assert "max_in_flight" in error.detail and "not a rate limit" in error.detail
    assert refused(gate, "tenant_in_flight") == 1
    assert gate.in_flight == 1


def test_a_released_slot_is_given_back_once_only() -> None:
    async def run() -> int:
        gate = admission(capacity=0, cap=1)
        slot = await gate.admit(A, cap=1)
        slot.release()
        slot.release()
        again = await gate.admit(A, cap=1)
        count = gate.in_flight_of(A)
        again.release()
        return count

    assert asyncio.run(run()) == 1


def test_a_wait_is_bounded_429_over_the_fair_share_503_within_it() -> None:
    async def run() -> tuple[tuple[Slot | BaseException, Slot | BaseException], Admission]:
        gate = admission(capacity=2, wait=0.05)
        held = [await gate.admit(A, cap=0) for _ in range(2)]
        # Both wait for the full gateway; A holds 2 of 2 (its share is 1), B holds none.
        outcomes = await asyncio.gather(
            gate.admit(A, cap=0), gate.admit(B, cap=0), return_exceptions=True
        )
        for slot in held:
            slot.release()
        assert gate.in_flight == 0
        return outcomes, gate

    (over_share, saturated), gate = asyncio.run(run())
    assert isinstance(over_share, GatewayError) and isinstance(saturated, GatewayError)
    assert over_share.status == 429 and "fair share" in over_share.detail
    assert saturated.status == 503 and saturated.headers["Retry-After"] == "1"
    assert refused(gate, "tenant_share") == 1 and refused(gate, "saturated") == 1


def test_a_cancelled_waiter_leaves_the_queue_and_takes_no_slot() -> None:
    async def run() -> tuple[int, int]:
        gate = admission(capacity=1)
        held = await gate.admit(A, cap=0)
        waiting = asyncio.create_task(gate.admit(B, cap=0))
        await asyncio.sleep(0)
        waiting.cancel()
        held.release()  # in the same instant the waiter goes: no slot may leak to it
        await asyncio.gather(waiting, return_exceptions=True)
        after = gate.in_flight
        slot = await asyncio.wait_for(gate.admit(A, cap=0), 1)
        slot.release()
        return after, gate.in_flight

    assert asyncio.run(run()) == (0, 0)


def test_off_admits_everything() -> None:
    async def run() -> int:
        gate = admission(capacity=1, cap=1, enabled=False)
        slots = [await gate.admit(A, cap=gate.cap_for(1)) for _ in range(50)]
        for slot in slots:
            slot.release()
        return len(slots)

    assert asyncio.run(run()) == 50
