"""A slow client holds no upload slot: an upload that brings less than ``upload_progress_bytes`` within a window of
waiting for it is cut off with a 408 at once (not at the whole body's deadline) and its slot is free; an upload at a
slow mobile line's pace, or one the server itself is slow to read, passes. One client address holds at most
MAX_UPLOADS_PER_CLIENT slots (an address a client writes into X-Forwarded-For is not believed), and the last free
slot is kept for a case with no upload in flight.

Old code: two debtors' four uploads trickling in a byte a second held every slot for 300 s, and every other debtor
got 503 (a hostile review against a real ``seal-server run``); the end-to-end test below is that attack, scaled down."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi.testclient import TestClient

from seal_dev.broker import free_port
from server.api.body_limit import (
    MAX_UPLOADS_IN_FLIGHT,
    MAX_UPLOADS_PER_CLIENT,
    BodyLimit,
    UploadPace,
    UploadRoute,
)
from server.api.removal_requests import UPLOAD_PATH
from server.app import create_app
from server.config import RemovalSettings
from server.core.db import SessionFactory
from tests.agent.helpers import wait_until
from tests.server.auth_helpers import make_settings
from tests.server.helpers import CASE_A, CASE_B
from tests.server.removal_world import RemovalWorld, c, make_world, pdf_bytes
from tests.server.test_body_limit_uploads import _held_app, _may_upload

MiB = 1024 * 1024
CASE_C, CASE_D = "(2023)苏0214执7号", "(2023)苏0214执8号"
#: A window short enough for a test: 1 KiB within every 0.3 s of waiting.
PACE = UploadPace(deadline_s=30, progress_bytes=1024, progress_window_s=0.3)


async def _read_all(receive: Any) -> int:
    size = 0
    while True:
        message = await receive()
        size += len(message.get("body", b""))
        if not message.get("more_body"):
            return size


def _sender(chunk: int, every_s: float, total: int) -> Any:
    """A client's body: ``chunk`` bytes every ``every_s``, ``total`` in all."""
    sent = 0

    async def receive() -> dict[str, Any]:
        nonlocal sent
        await asyncio.sleep(every_s)
        sent += chunk
        return {"type": "http.request", "body": b"x" * chunk, "more_body": sent < total}

    return receive


async def _post(
    limit: BodyLimit, receive: Any, case_no: str = CASE_A, peer: str = "198.51.100.7", **headers: str
) -> Any:
    answers: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        answers.append(message)

    scope = {
        "type": "http",
        "method": "POST",
        "path": f"/api/cases/{case_no}/removal-requests",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "client": (peer, 40000),
    }
    await limit(scope, receive, send)
    return answers


def test_an_upload_trickling_in_is_cut_off_within_the_window_and_frees_its_slot() -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await _read_all(receive)
        await send({"type": "http.response.start", "status": 201, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    limit = BodyLimit(app, uploads=[UploadRoute(UPLOAD_PATH, 10 * MiB, _may_upload)], pace=PACE)

    async def run() -> tuple[float, list[dict[str, Any]]]:
        started = time.monotonic()
        answers = await asyncio.wait_for(_post(limit, _sender(1, 0.02, 10**6)), 10)  # 50 bytes/s, never done
        took = time.monotonic() - started
        assert (limit.in_flight, limit.in_flight_by_case, limit.in_flight_by_client) == (0, {}, {})
        return took, answers

    took, answers = asyncio.run(run())
    assert answers[0]["status"] == 408
    assert took < 1.5, f"cut off after {took:.1f} s, not within its window"
    said = answers[1]["body"].decode()
    assert "上传过慢（0.3 秒内不足 1024 字节）" in said and "less than 1024 bytes in 0.3 s" in said, said
    assert said.index("上传") < said.index("the upload")


def test_a_slow_but_steady_upload_and_one_the_server_reads_slowly_pass() -> None:
    """Several windows long: 400 bytes every 0.05 s (8 KiB/s against 1 KiB in 0.3 s), and a server that takes
    longer than a window between two reads (its own time is not the client's)."""
    pauses = {"server": 0.0}

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            await asyncio.sleep(pauses["server"])
            if not message.get("more_body"):
                break
        await send({"type": "http.response.start", "status": 201, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    limit = BodyLimit(app, uploads=[UploadRoute(UPLOAD_PATH, 10 * MiB, _may_upload)], pace=PACE)

    async def run() -> list[int]:
        steady = await _post(limit, _sender(400, 0.05, 400 * 30))  # 1.5 s: five windows
        pauses["server"] = 0.5
        read_slowly = await _post(limit, _sender(2048, 0.0, 2048 * 4))
        return [steady[0]["status"], read_slowly[0]["status"]]

    assert asyncio.run(run()) == [201, 201]


def test_one_address_cannot_take_every_slot() -> None:
    """Uploads of other cases from one address: MAX_UPLOADS_PER_CLIENT, then 503 — whatever X-Forwarded-For it
    writes (its peer is no trusted proxy), and an IPv6 address counts as its /64; another address is received."""
    release, entered, app = _held_app()
    limit = BodyLimit(app, uploads=[UploadRoute(UPLOAD_PATH, 10 * MiB, _may_upload)])
    assert MAX_UPLOADS_PER_CLIENT < MAX_UPLOADS_IN_FLIGHT - 1

    async def run() -> None:
        held = [
            asyncio.create_task(_post(limit, _may_have(), CASE_A, "2001:db8:1:2::10")),
            asyncio.create_task(_post(limit, _may_have(), CASE_B, "2001:db8:1:2::11")),
        ]
        while len(entered) < MAX_UPLOADS_PER_CLIENT:
            await asyncio.sleep(0.01)
        same_64 = await _post(limit, _may_have(), CASE_C, "2001:db8:1:2::12")
        spoofed = await _post(limit, _may_have(), CASE_C, "2001:db8:1:2::12", **{"X-Forwarded-For": "192.0.2.44"})
        assert [same_64[0]["status"], spoofed[0]["status"]] == [503, 503]
        other = asyncio.create_task(_post(limit, _may_have(), CASE_C, "192.0.2.44"))
        while len(entered) < MAX_UPLOADS_PER_CLIENT + 1:
            await asyncio.sleep(0.01)
        assert limit.in_flight_by_client == {"2001:db8:1:2::/64": 2, "192.0.2.44": 1}
        release.set()
        answers = await asyncio.gather(*held, other)
        assert [a[0]["status"] for a in answers] == [201, 201, 201]
        assert (limit.in_flight, limit.in_flight_by_client) == (0, {})

    asyncio.run(run())


def test_the_last_slot_is_kept_for_a_case_with_no_upload_in_flight() -> None:
    release, entered, app = _held_app()
    limit = BodyLimit(app, uploads=[UploadRoute(UPLOAD_PATH, 10 * MiB, _may_upload)], max_uploads=4)

    async def run() -> None:
        held = []
        for n, case_no in enumerate([CASE_A, CASE_A, CASE_B]):
            held.append(asyncio.create_task(_post(limit, _may_have(), case_no, f"192.0.2.{n}")))
            while len(entered) < n + 1:
                await asyncio.sleep(0.01)
        second_of_b = await _post(limit, _may_have(), CASE_B, "192.0.2.10")
        assert second_of_b[0]["status"] == 503
        held.append(asyncio.create_task(_post(limit, _may_have(), CASE_C, "192.0.2.11")))
        while len(entered) < 4:
            await asyncio.sleep(0.01)
        assert (await _post(limit, _may_have(), CASE_D, "192.0.2.12"))[0]["status"] == 503  # all four taken
        release.set()
        assert [a[0]["status"] for a in await asyncio.gather(*held)] == [201] * 4

    asyncio.run(run())


def _may_have() -> Any:
    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"x", "more_body": False}

    return receive


# -- end to end, on a real server ---------------------------------------------------------------------------------


@pytest.fixture
def served(database_url: str, session_factory: SessionFactory, tmp_path: Path) -> Iterator[tuple[RemovalWorld, Any]]:
    removal = RemovalSettings(upload_progress_bytes=16 * 1024, upload_progress_window_s=1)
    app = create_app(make_settings(database_url, tmp_path).model_copy(update={"removal": removal}), with_ingest=False)
    world = make_world(session_factory, tmp_path, TestClient(app))  # its users; the requests go to `server`
    app.state.port = port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    assert wait_until(lambda: server.started, 30)
    try:
        yield world, app
    finally:
        server.should_exit = True
        thread.join(10)


class Trickle:
    """An upload by ``headers``' debtor, from a socket of its own: a valid multipart prefix, then a byte every
    0.1 s (10 bytes/s) until the server answers; ``status`` and ``after_s`` once it has."""

    def __init__(self, port: int, case_no: str, headers: dict[str, str]) -> None:
        self.status: int | None = None
        self.after_s = 0.0
        self.thread = threading.Thread(target=self._run, args=(port, case_no, headers), daemon=True)
        self.thread.start()

    def _run(self, port: int, case_no: str, headers: dict[str, str]) -> None:
        started = time.monotonic()
        with socket.create_connection(("127.0.0.1", port)) as sock:
            head = [f"POST /api/cases/{c(case_no)}/removal-requests HTTP/1.1", "Host: 127.0.0.1"]
            head += [f"{k}: {v}" for k, v in headers.items()]
            head += ["Content-Type: multipart/form-data; boundary=XX", "Content-Length: 100000"]
            sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
            sock.sendall(
                b'--XX\r\nContent-Disposition: form-data; name="ground"\r\n\r\npaid_in_full\r\n--XX\r\n'
                b'Content-Disposition: form-data; name="files"; filename="a.pdf"\r\n'
                b"Content-Type: application/pdf\r\n\r\n%PDF-1.4\n"
            )
            sock.settimeout(0.1)
            answer = b""
            while time.monotonic() - started < 30 and b"\r\n" not in answer:
                try:
                    sock.send(b"A")
                    answer += sock.recv(4096)
                except (TimeoutError, BlockingIOError):
                    continue
                except OSError:
                    break
        self.after_s = time.monotonic() - started
        self.status = int(answer.split(b" ")[1]) if answer.startswith(b"HTTP/1.1 ") else -1


def test_trickling_uploads_on_a_real_server_are_cut_off_and_shut_nobody_out(served: tuple[RemovalWorld, int]) -> None:
    """Old code: the debtor's two trickles and debtor-b's upload all admitted from one address, the trickles cut
    only at the 300 s deadline (here: still open when the test gives up)."""
    world, app = served
    base, limit = f"http://127.0.0.1:{app.state.port}", _body_limit(app)
    trickles = [Trickle(app.state.port, CASE_A, world.as_("debtor")) for _ in range(2)]
    assert wait_until(lambda: limit.in_flight == 2, 10)
    # From the same address (127.0.0.1), another case's debtor is refused while both trickles hold its slots.
    data = {"ground": "paid_in_full", "statement": "已全部清偿。Paid in full."}
    files = [("files", ("回单.pdf", pdf_bytes(), "application/pdf"))]
    url = f"{base}/api/cases/{c(CASE_B)}/removal-requests"
    refused = httpx.post(url, data=data, files=files, headers=world.as_("debtor-b"), timeout=30)
    for trickle in trickles:
        trickle.thread.join(15)
    assert [(t.status, t.after_s < 6) for t in trickles] == [(408, True)] * 2, [(t.status, t.after_s) for t in trickles]
    assert refused.status_code == 503 and refused.headers["retry-after"] == "10", refused.text
    # Their slots are free again: a normal upload (at the test's own speed) is filed.
    filed = httpx.post(url, data=data, files=files, headers=world.as_("debtor-b"), timeout=30)
    assert filed.status_code == 201, filed.text
    assert wait_until(lambda: (limit.in_flight, limit.in_flight_by_client) == (0, {}), 5)


def _body_limit(app: Any) -> BodyLimit:
    """The app's :class:`BodyLimit`, in the middleware stack the server built."""
    layer = app.middleware_stack
    while not isinstance(layer, BodyLimit):
        layer = layer.app
    return layer
