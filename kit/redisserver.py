"""Redis (or Valkey) as a real process on 127.0.0.1 that requires a password (kit.redisacl)."""

from __future__ import annotations

import contextlib
import os
import re
import socket
from pathlib import Path

from kit.binaries import ServerError, redis_server_binary
from kit.children import Child, spawn, wait_until
from kit.ports import BIND_ERRORS, free_port, start_failure
from kit.redisacl import RedisPasswords, acl_rules, redis_url


class RedisServer:
    """A redis-server on 127.0.0.1 that can be stopped and started again on the same port.

    It requires a password: one ACL user per kind of client (kit.redisacl), `default` off.
    """

    def __init__(
        self,
        base_dir: Path,
        *,
        port: int | None = None,
        persist: bool = False,
        binary: Path | None = None,
        passwords: RedisPasswords | None = None,
    ) -> None:
        self.base_dir = Path(base_dir).resolve()
        self.log_path = self.base_dir / "redis.log"
        self.config_path = self.base_dir / "users.conf"
        self._port_given = port is not None
        self.port = port if port is not None else free_port()
        self.persist = persist
        self.binary = binary
        self.passwords = passwords or RedisPasswords.generate()
        self.child: Child | None = None

    def url_for(self, user: str) -> str:
        """`redis://user:password@127.0.0.1:port/0` for one ACL user."""
        return redis_url(
            user=user, password=self.passwords.of(user), host="127.0.0.1", port=self.port
        )

    @property
    def url(self) -> str:
        """The gateway's URL (user `gateway`: every tk: key but the services' nonces)."""
        return self.url_for("gateway")

    @property
    def services_url(self) -> str:
        """The services' URL (user `services`: only tk:nonce:* keys, only SET and PING)."""
        return self.url_for("services")

    @property
    def admin_url(self) -> str:
        """The kit's own URL (user `admin`); for probes and tests, never for a service."""
        return self.url_for("admin")

    def _write_config(self) -> None:
        # A config file, not argv: `ps` shows argv. It holds only password hashes anyway.
        tmp = self.config_path.with_name(self.config_path.name + ".tmp")
        tmp.unlink(missing_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.writelines(f"user {line}\n" for line in acl_rules(self.passwords))
        tmp.replace(self.config_path)

    def running(self) -> bool:
        """True while the server process we started is alive."""
        return self.child is not None and self.child.alive()

    def start(self, *, timeout: float = 15.0) -> None:
        """Start on `self.port` (again, after a stop) and wait for PING."""
        if self.running():
            return
        self.base_dir.mkdir(parents=True, exist_ok=True)
        binary = self.binary or redis_server_binary()
        self._write_config()
        for attempt in range(3):
            argv = [
                str(binary),
                str(self.config_path),
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.base_dir),
                "--daemonize",
                "no",
                "--logfile",
                "",
            ]
            if self.persist:
                argv += ["--appendonly", "yes", "--save", "60 1"]
            else:
                argv += ["--save", "", "--appendonly", "no"]
            self.child = spawn("redis", argv, log_path=self.log_path, cwd=self.base_dir)
            if wait_until(self._pings, timeout=timeout, child=self.child):
                return
            tail = self.child.tail(20)
            state = start_failure(self.child, timeout)
            self.stop()
            if self._port_given or attempt == 2 or not any(e in tail for e in BIND_ERRORS):
                raise ServerError(
                    f"kit: redis-server {state} on 127.0.0.1:{self.port} "
                    f"(log {self.log_path}):\n{tail}"
                )
            self.port = free_port()

    def _pings(self) -> bool:
        """Our own redis-server answers: checked by pid, so a stranger on the port never counts.

        A raw socket rather than redis-py: its retries would stretch a failed start to seconds.
        """
        if self.child is None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                words = [b"AUTH", b"admin", self.passwords.admin.encode()]
                auth = b"*3\r\n" + b"".join(b"$%d\r\n%s\r\n" % (len(w), w) for w in words)
                sock.sendall(auth + b"INFO server\r\n")
                data = b""
                while b"process_id:" not in data or not data.endswith(b"\r\n"):
                    chunk = sock.recv(65536)
                    if not chunk:
                        break
                    data += chunk
        except OSError:
            return False
        found = re.search(rb"process_id:(\d+)", data)
        return found is not None and int(found.group(1)) == self.child.pid

    def stop(self, *, timeout: float = 8.0) -> None:
        """Stop (SIGTERM, then SIGKILL); `start()` brings it back on the same port."""
        if self.child is not None:
            self.child.stop(timeout)
            self.child = None

    def kill(self) -> None:
        """Die abruptly (SIGKILL), as a crashed Redis would."""
        if self.child is not None:
            with contextlib.suppress(ProcessLookupError):
                self.child.popen.kill()
            self.child.stop(1)
            self.child = None
