"""The kit's Redis requires a password, and each kind of client reaches only its own keys."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest
import redis
import yaml

from kit.binaries import embedded_redis_binary, redis_server_binary
from kit.children import spawn, wait_until
from kit.redisacl import GATEWAY_RULES, SERVICES_RULES, RedisPasswords, redis_url
from kit.servers import RedisServer, free_port

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module", params=["system", "embedded"])
def acl_redis(request: pytest.FixtureRequest, kit_workdir: Path) -> Iterator[RedisServer]:
    """The system redis-server and the embedded valkey-server, each with the kit's ACL."""
    binary = None if request.param == "system" else embedded_redis_binary()
    server = RedisServer(kit_workdir / f"redis-acl-{request.param}", binary=binary)
    server.start()
    yield server
    server.stop()


def _client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_timeout=2, decode_responses=True)


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False


def test_an_unauthenticated_client_can_do_nothing(acl_redis: RedisServer) -> None:
    anonymous = redis.Redis(host="127.0.0.1", port=acl_redis.port, socket_timeout=2)
    for attempt in (anonymous.ping, lambda: anonymous.get("tk:apikey:x")):
        with pytest.raises(redis.AuthenticationError):
            attempt()
    with pytest.raises(redis.AuthenticationError):
        redis.Redis.from_url(acl_redis.url.replace(acl_redis.passwords.gateway, "wrong")).ping()


def test_the_services_user_cannot_read_or_write_a_gateway_key(acl_redis: RedisServer) -> None:
    gateway, services = _client(acl_redis.url), _client(acl_redis.services_url)
    gateway.set("tk:apikey:" + "ab" * 32, '{"tenant_id": 1}')
    for attempt in (
        lambda: services.get("tk:apikey:" + "ab" * 32),
        lambda: services.set("tk:apikey:" + "cd" * 32, '{"tenant_id": 2}'),
        lambda: services.set("tk:tenant:id:1", "{}"),
        lambda: services.publish("tk:invalidate", "tenant:1"),
        lambda: services.keys("*"),
    ):
        with pytest.raises(redis.exceptions.NoPermissionError):
            attempt()
    # What replay protection needs still works: SET NX EX on its own keys, and PING.
    assert services.set("tk:nonce:n1", "1", nx=True, ex=60) is True
    assert services.set("tk:nonce:n1", "1", nx=True, ex=60) is None
    assert services.ping()


def test_the_gateway_user_reaches_its_keys_but_not_the_nonces_or_the_server(
    acl_redis: RedisServer,
) -> None:
    gateway = _client(acl_redis.url)
    for key in ("tk:tenant:id:1", "tk:rl:1", "tk:nonceX", "tk:n"):
        assert gateway.set(key, "1", px=1000)
    assert gateway.eval("return redis.call('TIME')[1]", 0)
    assert gateway.publish("tk:invalidate", "tenant:1") == 0
    for attempt in (
        lambda: gateway.set("tk:nonce:n2", "1"),
        lambda: gateway.get("tk:nonce:n1"),
        lambda: gateway.set("elsewhere", "1"),
        gateway.flushall,
        lambda: gateway.config_get("*"),
        lambda: gateway.acl_list(),
    ):
        with pytest.raises(redis.exceptions.NoPermissionError):
            attempt()


def test_compose_starts_redis_with_the_same_users_and_its_healthcheck_passes(
    kit_workdir: Path,
) -> None:
    """docker-compose.yml's redis command, run here on redis-server 7 (no Docker needed)."""
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    redis_service = compose["services"]["redis"]
    script = redis_service["command"][2].replace("$$", "$")  # compose's own escaping
    for rules in (GATEWAY_RULES, SERVICES_RULES):
        assert rules in script  # the same rules as the kit's, word for word
    folder = kit_workdir / "compose-redis"
    folder.mkdir()
    port = free_port()
    binary = redis_server_binary()
    script = script.replace("/data/", f"{folder}/").replace(
        "exec docker-entrypoint.sh redis-server", f"exec {binary}"
    )
    script += f" --port {port} --bind 127.0.0.1 --dir {folder}"
    passwords = RedisPasswords.generate()
    env = {
        "PATH": "/usr/bin:/bin",
        "REDIS_GATEWAY_PASSWORD": passwords.gateway,
        "REDIS_SERVICES_PASSWORD": passwords.services,
    }
    child = spawn("redis", ["sh", "-c", script], log_path=folder / "redis.log", env=env)
    try:
        url = partial(redis_url, host="127.0.0.1", port=port)
        gateway = _client(url(user="gateway", password=passwords.gateway))
        services = _client(url(user="services", password=passwords.services))
        assert wait_until(lambda: _pings(gateway), timeout=10, child=child)
        assert gateway.set("tk:apikey:" + "ef" * 32, "1")
        with pytest.raises(redis.exceptions.NoPermissionError):
            services.get("tk:apikey:" + "ef" * 32)
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(host="127.0.0.1", port=port).ping()
        assert (folder / "users.conf").stat().st_mode & 0o077 == 0
        health = redis_service["healthcheck"]["test"][1].replace("$$", "$")
        health = health.replace("redis-cli", f"redis-cli -p {port}")
        assert subprocess.run(["sh", "-c", health], env=env, check=False).returncode == 0
    finally:
        child.stop(5)
