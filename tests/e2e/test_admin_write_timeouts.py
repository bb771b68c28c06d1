"""An admin change whose database call outlives the request's deadline is still invalidated."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import httpx

from gateway.tests.factories import bearer, create_tenant
from kit.servers import PgServer
from kit.stacks import Stack

# Each step stays under the store's 2 s statement timeout, together they pass its 3 s deadline.
LOCK_HELD_SECONDS = 1.6
COMMIT_SECONDS = 1.7
SLOW_COMMIT = f"""
CREATE FUNCTION public.test_slow_commit() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN PERFORM pg_sleep({COMMIT_SECONDS}); RETURN NULL; END $$;
CREATE CONSTRAINT TRIGGER test_slow_commit AFTER UPDATE ON public.tenants
DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION public.test_slow_commit();
"""


def test_a_suspension_committed_after_its_request_timed_out_is_seen_within_one_second(
    fresh_stack: Callable[..., Stack], postgres_server: PgServer
) -> None:
    stack = fresh_stack()
    with stack.admin_client() as admin:
        tenant = create_tenant(admin)
    url, headers = f"{stack.url}/users", bearer(tenant["api_key"])
    time.sleep(0.7)  # past the creation's second invalidation pass, which empties the caches
    assert httpx.get(url, headers=headers).status_code == 200  # cached in-process and in Redis

    holder = postgres_server.connect(stack.database.name)
    watcher = postgres_server.connect(stack.database.name)
    watcher.autocommit = True
    try:
        with holder.cursor() as cur:
            cur.execute(SLOW_COMMIT)
        holder.commit()
        # Another transaction holds the tenant's row: the suspension's UPDATE waits for it.
        with holder.cursor() as cur:
            cur.execute("SELECT 1 FROM tenants WHERE id = %s FOR UPDATE", (tenant["id"],))
        answers: list[httpx.Response] = []

        def suspend() -> None:
            with stack.admin_client() as admin:
                body = {"status": "suspended"}
                answers.append(admin.patch(f"/admin/tenants/{tenant['id']}", json=body))

        request = threading.Thread(target=suspend)
        request.start()
        time.sleep(LOCK_HELD_SECONDS)
        holder.commit()

        def committed() -> bool:
            with watcher.cursor() as cur:
                cur.execute("SELECT status FROM tenants WHERE id = %s", (tenant["id"],))
                row = cur.fetchone()
            return row is not None and row[0] == "suspended"

        deadline = time.monotonic() + 10
        while not committed():
            assert time.monotonic() < deadline, "the suspension never committed"
            # Requests meanwhile re-read the old row and cache it again, right up to the commit
            # (a 403 here means the commit landed between the check above and this request).
            httpx.get(url, headers=headers, timeout=5)
            time.sleep(0.01)
        seen_commit = time.monotonic()
        request.join(10)
        # The request gave up before the commit: the client was told 503, not "done".
        assert answers and answers[0].status_code == 503, answers

        statuses = []
        while time.monotonic() - seen_commit < 1.0:
            statuses.append(httpx.get(url, headers=headers, timeout=5).status_code)
            if statuses[-1] == 403:
                break
            time.sleep(0.02)
        assert statuses[-1] == 403, f"still served {len(statuses)} times after the commit"
    finally:
        holder.close()
        watcher.close()
