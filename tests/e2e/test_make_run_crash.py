"""`make run` survives a crash (SPEC §2): the crashed child comes back, the rest keep running."""

from __future__ import annotations

import contextlib
import threading
import time
from pathlib import Path

import httpx
import psutil
from makerun import MakeRun, gone
from test_walkthrough import insert_tutorial_tenants

from kit.procs import child_env
from kit.servers import free_port

TENANT = {"X-Tenant-ID": "1"}


def _start(kit_workdir: Path, folder: str) -> tuple[MakeRun, str]:
    port = free_port()
    env = child_env(
        {
            "KIT_DATA_DIR": str(kit_workdir / folder),
            "GATEWAY_PORT": str(port),
            "USERS_PORT": str(free_port()),
            "GATEWAY_AUTH_MODES": "header",
        }
    )
    run = MakeRun(env)
    run.wait_for("tenantkit is ready", timeout=120)
    insert_tutorial_tenants(run.printed("export DATABASE_URL="))
    return run, f"http://localhost:{port}"


def _process(run: MakeRun, needle: str) -> psutil.Process:
    """The live child of `make run` whose command line contains `needle`."""
    found = [p for p in run.descendants() if _is_child(run, p, needle)]
    assert len(found) == 1, [p.pid for p in run.descendants()]
    return found[0]


def _is_child(run: MakeRun, process: psutil.Process, needle: str) -> bool:
    """A live direct child of `make run` whose command line contains `needle`."""
    try:
        return (
            process.ppid() == run.popen.pid
            and not gone(process)
            and any(needle in part for part in process.cmdline())
        )
    except psutil.NoSuchProcess:
        return False  # gone between the listing and the look


def _replacement(run: MakeRun, needle: str, old_pid: int) -> psutil.Process:
    """The child that `make run` starts in place of `old_pid` (waits up to 30 s)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        found = [p for p in run.descendants() if p.pid != old_pid and _is_child(run, p, needle)]
        if found:
            return found[0]
        time.sleep(0.05)
    raise AssertionError(f"no new {needle} within 30 s:\n" + "\n".join(run.lines))


def _status(client: httpx.Client) -> int:
    try:
        return client.get("/users/", headers=TENANT).status_code
    except httpx.TransportError:
        return 0  # the gateway itself not answering: what this test must never see


def _wait_status(client: httpx.Client, wanted: int, timeout: float) -> list[int]:
    """Poll until GET /users/ answers `wanted`; every status seen on the way."""
    seen: list[int] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        seen.append(_status(client))
        if seen[-1] == wanted:
            return seen
        time.sleep(0.1)
    raise AssertionError(f"no {wanted} within {timeout} s; saw {sorted(set(seen))}")


class Writer(threading.Thread):
    """Creates users one after another; remembers the ones the stack acknowledged (201)."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.acknowledged: list[str] = []
        self.statuses: set[int] = set()
        self.stop = threading.Event()

    def run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=10) as client:
            n = 0
            while not self.stop.is_set():
                n += 1
                name = f"w{n}"
                try:
                    answer = client.post("/users/", headers=TENANT, data={"name": name})
                except httpx.TransportError:
                    self.statuses.add(0)
                    continue
                self.statuses.add(answer.status_code)
                if answer.status_code == 201:
                    self.acknowledged.append(name)
                time.sleep(0.05)


def test_a_killed_service_or_server_is_restarted_while_the_rest_keep_running(kit_workdir: Path):
    run, url = _start(kit_workdir, "crash-survival")
    writer = Writer(url)
    try:
        with httpx.Client(base_url=url, timeout=10) as client:
            assert _status(client) == 200
            gateway = _process(run, "gateway")
            writer.start()
            time.sleep(0.5)

            # kill -9 the users service: the gateway answers 503 for its routes meanwhile,
            # then the service is back on the same port.
            users = _process(run, "services.users")
            users.kill()
            seen = _wait_status(client, 503, timeout=5)
            assert 0 not in seen, "the gateway stopped answering while users was down"
            _wait_status(client, 200, timeout=30)
            assert _process(run, "services.users").pid != users.pid
            assert _process(run, "gateway").pid == gateway.pid
            run.wait_for("kit: users exited with -9; restarting it", timeout=1)

            # PostgreSQL dying is handled the same way, with the same data.
            postgres = _process(run, "postgres")
            postgres.kill()
            run.wait_for("kit: postgres is running again", timeout=60)
            _wait_status(client, 200, timeout=30)

            # And Redis.
            _process(run, "redis-server").kill()
            run.wait_for("kit: redis is running again", timeout=30)
            _wait_status(client, 200, timeout=30)
            time.sleep(0.5)

            writer.stop.set()
            writer.join(15)
            listed = client.get("/users/", headers=TENANT)
            assert listed.status_code == 200, listed.text
            names = {u["name"] for u in listed.json()}
            assert len(writer.acknowledged) > 10
            lost = [n for n in writer.acknowledged if n not in names]
            assert lost == [], f"acknowledged writes lost across the crashes: {lost}"
            assert 503 in writer.statuses
        assert run.popen.poll() is None
        assert run.terminate() == 0
    finally:
        writer.stop.set()
        run.close()


def test_five_crashes_of_one_service_within_a_minute_stop_the_stack_naming_it(
    kit_workdir: Path,
):
    run, _ = _start(kit_workdir, "crash-loop")
    try:
        started = run.descendants()
        users = _process(run, "services.users")
        for crash in range(5):
            with contextlib.suppress(psutil.NoSuchProcess):
                users.kill()
            if crash < 4:
                # Killed as soon as its replacement exists (before it is ready, too): the
                # crashes then fall within the window whatever the machine's speed.
                users = _replacement(run, "services.users", users.pid)
        assert run.popen.wait(timeout=20) == 1
        stop_lines = [ln for ln in run.lines if "crashed" in ln]
        assert stop_lines == [
            "kit: users crashed 5 times within 60 s (last exit status -9); stopping the stack"
        ], run.lines
        # Everything it started is gone within the SPEC's 10 s of stopping.
        deadline = time.monotonic() + 10
        while [p for p in started if not gone(p)] and time.monotonic() < deadline:
            time.sleep(0.1)
        left = [(p.pid, p.name()) for p in started if not gone(p)]
        assert left == []
    finally:
        run.close()
