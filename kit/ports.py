"""Loopback ports for the kit's servers, and how a server that did not start is described."""

from __future__ import annotations

import socket

from kit.children import Child

# What a server prints when another process took its port between our check and its bind.
BIND_ERRORS = ("Address already in use", "could not bind", "could not create any TCP/IP")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_in_use(port: int) -> bool:
    """True when something accepts connections on 127.0.0.1:`port`."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def start_failure(child: Child | None, timeout: float) -> str:
    """Why a server is not serving: it exited, or it never became ready in time."""
    if child is not None and not child.alive():
        return f"exited with {child.popen.returncode} before it was ready"
    return f"was not ready within {timeout:.0f} s"
