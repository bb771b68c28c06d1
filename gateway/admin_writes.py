"""An admin change and its cache invalidation, also when the change's outcome is unknown.

The request stops waiting for PostgreSQL after CALL_DEADLINE_SECONDS (503), but the worker
thread goes on and may still commit: a suspension or a key revocation would then sit unseen
in every cache for the TTL. So a change that times out is invalidated at once (what can be
named without its result) and again, fully, the moment its thread commits.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from functools import partial
from typing import Any, TypeVar

import anyio
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from gateway.errors import DependencyDown
from gateway.invalidation import Invalidator
from gateway.store import CALL_DEADLINE_SECONDS

T = TypeVar("T")
Plan = tuple[list[str], list[str]]
log = logging.getLogger("gateway.admin")


async def change(
    fn: Callable[..., T],
    *args: Any,
    invalidator: Invalidator,
    plan: Callable[[T], Plan],
    unknown: Plan,
    **kwargs: Any,
) -> T:
    """Run the store change `fn` and invalidate what `plan(result)` names, whatever happens.

    `unknown` is what to invalidate when the outcome is not known within the deadline.
    """
    work = asyncio.ensure_future(anyio.to_thread.run_sync(partial(fn, *args, **kwargs)))
    try:
        # shield: the deadline (or a client hanging up) must not lose the thread's outcome.
        result = await asyncio.wait_for(asyncio.shield(work), CALL_DEADLINE_SECONDS)
    except TimeoutError:
        work.add_done_callback(partial(_when_settled, invalidator=invalidator, plan=plan))
        await invalidator.publish(*unknown)
        raise DependencyDown("PostgreSQL") from None
    except IntegrityError:
        raise
    except SQLAlchemyError as exc:
        raise DependencyDown("PostgreSQL") from exc
    await invalidator.publish(*plan(result))
    return result


def _when_settled(
    work: asyncio.Future[T], *, invalidator: Invalidator, plan: Callable[[T], Plan]
) -> None:
    if work.cancelled() or work.exception() is not None:
        return  # it did not commit: nothing changed, nothing to invalidate
    log.warning("an admin change committed after its request timed out; invalidating now")
    invalidator.publish_soon(*plan(work.result()))
