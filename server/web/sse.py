"""Server-Sent Events on the wire, and the ASGI response that streams them without trusting the client to leave.

:func:`message` encodes one event (``id:``, ``event:``, ``data:`` lines; a multi-line payload becomes several
``data:`` lines, which the browser joins again). :class:`EventStream` sends the messages of an async iterator and
ends — always closing the iterator, so that its ``finally`` unsubscribes it — when the client disconnects, when the
iterator ends (the server closes the stream), or when one write takes longer than ``write_timeout_s``: a client
whose network vanished never reads, so its writes pile up and time out, and it is dropped (the kernel accepts a few
heartbeats into its buffer first; the stream's own lifetime, ``[web] stream_max_s``, bounds the rest).

The iterator's first message is taken before anything is sent: if it raises :class:`StreamRefused` instead (say, the
client holds too many streams), the answer is that refusal's status and text, not a stream — so that the iterator,
started, always runs its ``finally`` (an iterator closed before it started would not).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator
from contextlib import aclosing

import anyio
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

logger = logging.getLogger(__name__)

HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-store"),
    (b"x-accel-buffering", b"no"),  # a reverse proxy (nginx) must pass each message on at once
    (b"x-content-type-options", b"nosniff"),
]


class StreamRefused(Exception):
    """Raised by a stream's iterator before its first message: answer ``status_code`` with ``text`` instead."""

    def __init__(self, status_code: int, text: str, *, retry_after_s: int | None = None) -> None:
        super().__init__(text)
        self.status_code = status_code
        self.text = text
        self.retry_after_s = retry_after_s


def message(event: str, data: str = "", *, id: str | None = None) -> bytes:
    """One SSE message. ``event`` and ``id`` are ours (no line breaks); ``data`` may have any number of lines."""
    assert "\n" not in event and (id is None or "\n" not in id)
    lines = [f"event: {event}"]
    if id is not None:
        lines.append(f"id: {id}")
    lines += [f"data: {line}" for line in data.replace("\r\n", "\n").replace("\r", "\n").split("\n")]
    return ("\n".join(lines) + "\n\n").encode("utf-8")


def retry(milliseconds: int) -> bytes:
    """How long the browser waits before it reconnects a stream that ended."""
    return f"retry: {milliseconds}\n\n".encode("ascii")


class EventStream(Response):
    """An ASGI response streaming ``messages`` (see the module docstring). A :class:`Response` for FastAPI to pass
    on as it is; it sends its own headers (:data:`HEADERS`)."""

    def __init__(self, messages: AsyncGenerator[bytes, None], *, write_timeout_s: float) -> None:
        self.messages = messages
        self.write_timeout_s = write_timeout_s
        self.status_code = 200
        self.background = None
        self.init_headers({"content-type": HEADERS[0][1].decode()})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async with aclosing(self.messages) as messages:
            try:
                first = await anext(messages, b"")
            except StreamRefused as refused:
                await _refuse(send, refused)
                return
            await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
            async with anyio.create_task_group() as group:

                async def watch_disconnect() -> None:
                    while (await receive())["type"] != "http.disconnect":
                        pass
                    group.cancel_scope.cancel()

                group.start_soon(watch_disconnect)
                try:
                    if first:
                        with anyio.fail_after(self.write_timeout_s):
                            await send({"type": "http.response.body", "body": first, "more_body": True})
                    async for chunk in messages:
                        with anyio.fail_after(self.write_timeout_s):
                            await send({"type": "http.response.body", "body": chunk, "more_body": True})
                except TimeoutError:
                    logger.info("a live stream's client took over %.1f s to read: dropped", self.write_timeout_s)
                except OSError:  # the client is gone (ASGI 2.4 servers raise on a write to a closed connection)
                    pass
                group.cancel_scope.cancel()
        try:
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except OSError:
            pass


async def _refuse(send: Send, refused: StreamRefused) -> None:
    headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"cache-control", b"no-store")]
    if refused.retry_after_s is not None:
        headers.append((b"retry-after", str(refused.retry_after_s).encode("ascii")))
    try:
        await send({"type": "http.response.start", "status": refused.status_code, "headers": headers})
        await send({"type": "http.response.body", "body": refused.text.encode("utf-8"), "more_body": False})
    except OSError:
        pass
