"""The fault proxy itself, against an echo server: what each mode does to old and new connections."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from tests.reliability.faultproxy import FaultProxy


@pytest.fixture
def echo_port() -> Iterator[int]:
    server = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve(conn: socket.socket) -> None:
        with conn:
            try:
                while data := conn.recv(4096):
                    conn.sendall(data)
            except OSError:
                pass

    def accept() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield int(server.getsockname()[1])
    finally:
        stop.set()
        thread.join(5)
        server.close()


def _connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=2)
    sock.settimeout(0.5)
    return sock


def _echoes(sock: socket.socket) -> bool:
    sock.sendall(b"ping")
    try:
        return sock.recv(16) == b"ping"
    except TimeoutError:
        return False


def test_pass_blackhole_heal_reset(echo_port: int) -> None:
    with FaultProxy(echo_port) as proxy, _connect(proxy.port) as first:
        assert _echoes(first)
        proxy.blackhole()
        assert not _echoes(first), "a blackhole lets nothing through"
        with _connect(proxy.port) as during:  # the handshake succeeds, nothing comes back
            assert not _echoes(during)
            proxy.heal()
            for old in (first, during):  # their streams lost bytes: reset, never resumed
                with pytest.raises((ConnectionResetError, BrokenPipeError)):
                    old.sendall(b"x")
                    old.recv(16)
        with _connect(proxy.port) as after:
            assert _echoes(after)
            proxy.reset()
            with pytest.raises((ConnectionResetError, BrokenPipeError)):
                after.sendall(b"x")
                after.recv(16)
        with pytest.raises((ConnectionResetError, BrokenPipeError)):  # the reset may come before connect() returns
            with _connect(proxy.port) as refused:
                refused.sendall(b"x")
                refused.recv(16)
        proxy.heal()
        with _connect(proxy.port) as healed:
            assert _echoes(healed)
        assert proxy.stats.dropped_bytes > 0 and proxy.stats.resets >= 3
