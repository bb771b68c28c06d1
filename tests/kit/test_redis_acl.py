"""The kit's Redis requires a password, and each kind of client reaches only its own keys."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from kit.binaries import embedded_redis_binary
from kit.servers import RedisServer


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
