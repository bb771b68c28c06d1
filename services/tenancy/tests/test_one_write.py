"""Every process answers with one socket write (services/tenancy/coalesce.py): the peer gets
each small answer in one TCP segment, so it wakes and parses once, not once for the headers
and again for the body. Against the real gateway and users service; the kernel's own count
of data segments received (Linux's TCP_INFO) is the witness.
"""

from __future__ import annotations

import socket
import struct
from urllib.parse import urlsplit

import pytest

from kit.procs import ServiceProcess

# struct tcp_info (linux/tcp.h): tcpi_data_segs_in, segments that carried data, since 4.6.
_DATA_SEGS_IN_OFFSET = 152


def _read_answer(sock: socket.socket) -> tuple[bytes, bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed mid-answer: {data!r}"
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    lines = head.split(b"\r\n")
    length = next(int(x.split(b":")[1]) for x in lines if x.lower().startswith(b"content-length"))
    while len(body) < length:
        body += sock.recv(65536)
    return head, body


def _data_segments_in(sock: socket.socket) -> int:
    info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 256)
    return int(struct.unpack_from("I", info, _DATA_SEGS_IN_OFFSET)[0])


def _segments_per_answer(url: str, path: str, *, answers: int = 3) -> list[int]:
    address = urlsplit(url)
    counts = []
    with socket.create_connection((address.hostname, address.port), timeout=10) as sock:
        for _ in range(answers):  # on one keep-alive connection, as the gateway's pool does
            before = _data_segments_in(sock)
            sock.sendall(f"GET {path} HTTP/1.1\r\nHost: test\r\n\r\n".encode())
            head, _ = _read_answer(sock)
            assert head.startswith(b"HTTP/1.1 "), head
            counts.append(_data_segments_in(sock) - before)
    return counts


@pytest.mark.parametrize("process", ["gateway", "users_service"])
def test_each_answer_arrives_in_one_segment(process: str, request: pytest.FixtureRequest) -> None:
    service: ServiceProcess = request.getfixturevalue(process)
    # /healthz: headers and a small JSON body; /users unsigned: the 401 a caller gets.
    for path in ("/healthz", "/users/1"):
        assert _segments_per_answer(service.url, path) == [1, 1, 1], path


def test_a_closing_answer_is_sent_whole_before_the_connection_closes(
    users_service: ServiceProcess,
) -> None:
    address = urlsplit(users_service.url)
    with socket.create_connection((address.hostname, address.port), timeout=10) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
        head, body = _read_answer(sock)
        assert head.startswith(b"HTTP/1.1 200"), head
        assert body
        assert sock.recv(1) == b""  # and then the server closed it
