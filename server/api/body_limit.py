"""A cap on request bodies: no route takes more than :data:`MAX_BODY_BYTES`, so one huge request cannot cost the
server its memory. A declared ``Content-Length`` over the cap is answered 413 at once; a body streamed without one
is counted as it arrives and cut off with a 413 as soon as it passes the cap. Upload routes (a removal request's
proof files) get a larger cap of their own, by path; their files are spooled to disk as they arrive."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

#: Every JSON body of the API is a few kilobytes.
MAX_BODY_BYTES = 1024 * 1024


class BodyTooLarge(Exception):
    pass


class BodyLimit:
    """ASGI middleware: refuse request bodies over ``limit`` bytes with 413; a POST to a path that matches a
    pattern of ``larger`` may have that pattern's limit instead."""

    def __init__(
        self, app: ASGIApp, limit: int = MAX_BODY_BYTES, larger: Sequence[tuple[re.Pattern[str], int]] = ()
    ) -> None:
        self.app = app
        self.limit = limit
        self.larger = tuple(larger)

    def limit_for(self, scope: Scope) -> int:
        if scope.get("method") == "POST":
            path = scope.get("path", "")
            for pattern, limit in self.larger:
                if pattern.fullmatch(path):
                    return limit
        return self.limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            await _too_large(send, limit)
            return
        received = 0
        started = False

        async def counted_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge
            return message

        async def tracked_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted_receive, tracked_send)
        except BodyTooLarge:
            if not started:
                await _too_large(send, limit)


async def _too_large(send: Send, limit: int) -> None:
    body: Any = {"detail": f"request body larger than {limit} bytes"}
    payload = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": payload})
