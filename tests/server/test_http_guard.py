"""Slow and numerous clients against a real ``seal-server run``: a request body trickling in is cut off with a 408
and its connection closed, whatever the route (a login here), while other requests are answered; connections past
``[http] limit_concurrency`` get a 503 at once; and a stop (SIGTERM, as systemd's) with a slow client connected ends
within uvicorn's ``timeout_graceful_shutdown``, cleanly (exit 0, the ingest stopped after the requests).

Old code (a hostile review, /tmp/review-stalls): a login's body sent a byte every 5 s was never cut off, only the
upload routes had a pace; and with such a client connected a stop waited ("Waiting for connections to close") until
systemd's SIGKILL, at every restart."""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from seal_dev.broker import PrivateBroker
from seal_dev.court_process import CourtProcess
from server.setup.systemd_units import SERVER_REQUESTS_STOP_S
from tests.agent.helpers import wait_until

#: A body must bring 64 bytes within every 2 s of waiting for it (the default is 16 KiB in 15 s).
PACED = "[removal]\nupload_progress_bytes = 64\nupload_progress_window_s = 2\n"
#: What a client may take to send a body, here, before the test gives up on the server cutting it off.
GIVE_UP_S = 90.0
LOGIN = "/api/auth/login"


@dataclass
class Trickled:
    answer: bytes = b""
    closed: bool = False  # the server closed the connection after answering
    done: bool = False

    @property
    def status(self) -> int | None:
        return int(self.answer.split(b" ")[1]) if self.answer.startswith(b"HTTP/1.1 ") else None

    def said(self) -> str:
        return self.answer.partition(b"\r\n\r\n")[2].decode(errors="replace")


def trickle(
    port: int, chunk: bytes, every_s: float, *, path: str = "/api/auth/login"
) -> tuple[Trickled, socket.socket]:
    """A POST of 10,000 declared bytes whose body is sent ``chunk`` every ``every_s`` seconds, from a thread, until
    the server answers (then read to the connection's end) or :data:`GIVE_UP_S` pass."""
    sock = socket.create_connection(("127.0.0.1", port))
    head = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 10000\r\n\r\n"
    sock.sendall(head.encode() + b"{")
    result = Trickled()

    def run() -> None:
        sock.settimeout(every_s)
        deadline = time.monotonic() + GIVE_UP_S
        try:
            while time.monotonic() < deadline:
                if not result.answer:
                    sock.send(chunk)
                try:
                    data = sock.recv(65536)
                except TimeoutError:
                    continue
                if not data:
                    result.closed = True
                    break
                result.answer += data
        except OSError:  # reset after the answer: closed too
            result.closed = bool(result.answer)
        finally:
            result.done = True

    threading.Thread(target=run, daemon=True).start()
    return result, sock


def get(url: str, data: bytes | None = None) -> int:
    headers = {"content-type": "application/json"}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=data, headers=headers), timeout=10) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as refused:
        return refused.code


@pytest.fixture
def court(tmp_path: Path, broker: PrivateBroker, request: pytest.FixtureRequest) -> Iterator[CourtProcess]:
    http, extra = getattr(request, "param", ("", ""))
    process = CourtProcess(tmp_path / "court", broker, extra_settings=extra, http_settings=http)
    process.start()
    try:
        yield process
    finally:
        process.close()


@pytest.mark.parametrize("court", [("", PACED)], indirect=True)
def test_a_trickling_body_on_any_route_is_cut_off_with_408_and_closed(court: CourtProcess) -> None:
    """A byte a second falls short of the pace (64 bytes in 2 s): cut off as stalled. 100 bytes every 0.5 s keeps
    the pace but would take 50 s for its 10,000: cut off at [http] body_deadline_s (30 s by default). And a body
    the route does not read (no such route: 404 at once) is not waited for either: its connection is closed."""
    stalled, stalled_sock = trickle(court.port, b" ", 1.0)
    steady, steady_sock = trickle(court.port, b" " * 100, 0.5)
    unread, unread_sock = trickle(court.port, b" ", 1.0, path="/api/no-such-route")
    try:
        assert wait_until(lambda: stalled.done, GIVE_UP_S + 10)
        # meanwhile, others are served: the health, and a login whose body comes at once (unknown user: 401)
        assert get(f"{court.url}/api/health") == 200
        login = json.dumps({"username": "nobody", "password": "wrong password"}).encode()
        assert get(f"{court.url}/api/auth/login", login) == 401
        assert wait_until(lambda: steady.done and unread.done, GIVE_UP_S + 10)
    finally:
        for sock in (stalled_sock, steady_sock, unread_sock):
            sock.close()
    assert (unread.status, unread.closed) == (404, True), unread
    assert (stalled.status, stalled.closed) == (408, True), stalled
    assert "请求内容过慢（2 秒内不足 64 字节）" in stalled.said() and "less than 64 bytes in 2 s" in stalled.said()
    assert (steady.status, steady.closed) == (408, True), steady
    assert "请求内容未能在 30 秒内完成" in steady.said() and "did not arrive within 30 s" in steady.said()
    assert b"connection: close" in steady.answer.lower()


@pytest.mark.parametrize("court", [("limit_concurrency = 16\n", "")], indirect=True)
def test_connections_past_limit_concurrency_are_answered_503(court: CourtProcess) -> None:
    health = f"{court.url}/api/health"
    assert get(health) == 200
    idle = [socket.create_connection(("127.0.0.1", court.port)) for _ in range(15)]
    try:
        assert wait_until(lambda: get(health) == 503, 30)  # the 16th connection open
    finally:
        for sock in idle:
            sock.close()
    assert wait_until(lambda: get(health) == 200, 30)


@pytest.mark.parametrize(
    "court", [("", "[removal]\nupload_progress_bytes = 1\nupload_progress_window_s = 300\n")], indirect=True
)
def test_a_stop_with_a_slow_client_connected_ends_cleanly_within_the_grace(court: CourtProcess) -> None:
    """The client keeps the pace (a byte a second, 1 byte in 300 s asked) and the body's deadline (30 s) is far: only
    the stop's grace (SERVER_REQUESTS_STOP_S, 10 s) ends its request."""
    slow, sock = trickle(court.port, b" ", 1.0)
    try:
        # a request on a connection made after it is answered: the slow one, accepted before, is open in the app
        assert get(f"{court.url}/api/health") == 200
        assert not slow.done
        assert court.stop(timeout=SERVER_REQUESTS_STOP_S + 15) == 0
    finally:
        sock.close()
    log = court.log_tail(200)
    assert "MQTT ingest stopped" in log and "court server stopped by signal 15" in log, log
