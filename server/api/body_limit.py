"""A cap on request bodies: no route takes more than :data:`MAX_BODY_BYTES`, so one huge request cannot cost the
server its memory. A declared ``Content-Length`` over the cap is answered 413 at once; a body streamed without one
is counted as it arrives and cut off with a 413 as soon as it passes the cap.

Upload routes (a removal request's proof files) have a larger cap, but only for whom may upload there: what
:class:`UploadRoute`'s ``uploader`` says of the request, from its headers alone, **before its body is read**. The
debtor filing on their own case gets the larger cap (:data:`MAX_UPLOADS_IN_FLIGHT` such uploads at once, at most
:data:`MAX_UPLOADS_PER_CASE` of them for one case — counted by the case's canonical number, however the path spells
it, as the route finds the case — so that one debtor's slow uploads cannot keep every other out; a 503 beyond). Such
an upload's body must have arrived within ``upload_deadline_s`` (``[removal] upload_deadline_s``), or it is cut off
with a 408: a body trickling in a byte a minute does not hold a slot for days;
a request without a live session reaches its route without its body — the route refuses it (401, or the sign-in
page) and nothing of the body is read; anyone else signed in has the ordinary cap. When that check fails (the
database), the request is answered, without its body read, by the app's handler of the error, as a route's failure
would be (a deadlock PostgreSQL broke: 503 "try again"; a database that does not answer: 500)."""

from __future__ import annotations

import asyncio
import functools
import inspect
import json
import logging
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any, cast

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server.seals.case_numbers import canonical_case_no

logger = logging.getLogger(__name__)

#: Every JSON body of the API is a few kilobytes.
MAX_BODY_BYTES = 1024 * 1024
#: Uploads with the larger cap being received or checked at once, in one process; one more is answered 503.
MAX_UPLOADS_IN_FLIGHT = 4
#: Of those, at most this many for one case (its debtor's), one more for that case answered 503.
MAX_UPLOADS_PER_CASE = 2
#: What a request that asks for the larger cap while :data:`MAX_UPLOADS_IN_FLIGHT` others have it is told.
BUSY_TEXT = "服务器正在接收其他上传，请稍后重试。 / the server is receiving other uploads; try again shortly"
BUSY_RETRY_AFTER_S = 10
#: How long an upload with the larger cap may take to arrive, by default (a 50 MB body at 2 Mbit/s: 200 s).
UPLOAD_DEADLINE_S = 300.0
#: The headers that describe a body: a request passed on without its body has none of them.
_BODY_HEADERS = frozenset({b"content-length", b"content-type", b"transfer-encoding"})


#: Of a refusal (the request's scope, the status, its ``error.`` key and values): a page's answer, or ``None`` for JSON.
RefusalPage = Callable[[Scope, int, str, dict[str, object]], Response | None]


class BodyTooLarge(Exception):
    pass


class BodyTooSlow(Exception):
    pass


class Uploader(Enum):
    """Who sends a request to an upload route, as far as the larger cap is concerned."""

    MAY_UPLOAD = "may_upload"  # a live session whose user may upload to the path's case: the larger cap
    SIGNED_OUT = "signed_out"  # no live session: the route refuses it before its body matters, so it gets none
    OTHER = "other"  # signed in, but may not upload there: the ordinary cap


@dataclass(frozen=True)
class UploadRoute:
    """POST paths matching ``pattern`` (its group ``case_no`` names the case) may have a body of ``limit`` bytes,
    for whom ``uploader(scope, case_no)`` says :attr:`Uploader.MAY_UPLOAD`."""

    pattern: re.Pattern[str]
    limit: int
    uploader: Callable[[Scope, str], Awaitable[Uploader]]


class BodyLimit:
    """ASGI middleware: refuse request bodies over ``limit`` bytes with 413; a POST to the path of one of
    ``uploads`` may have its larger limit, if its ``uploader`` allows (see the module's docstring)."""

    def __init__(
        self,
        app: ASGIApp,
        limit: int = MAX_BODY_BYTES,
        uploads: Sequence[UploadRoute] = (),
        max_uploads: int = MAX_UPLOADS_IN_FLIGHT,
        max_uploads_per_case: int = MAX_UPLOADS_PER_CASE,
        upload_deadline_s: float = UPLOAD_DEADLINE_S,
        refusal_page: RefusalPage | None = None,
    ) -> None:
        self.app = app
        self.limit = limit
        self.uploads = tuple(uploads)
        self.max_uploads = max_uploads
        self.max_uploads_per_case = max_uploads_per_case
        self.upload_deadline_s = upload_deadline_s
        self.refusal_page = refusal_page
        self.in_flight = 0  # uploads with the larger cap now (one event loop: no lock needed)
        self.in_flight_by_case: dict[str, int] = {}

    def upload_for(self, scope: Scope) -> tuple[UploadRoute, str] | None:
        """The upload route the request is sent to, and the case its path names; ``None`` for any other."""
        if scope.get("method") == "POST":
            path = scope.get("path", "")
            for upload in self.uploads:
                if found := upload.pattern.fullmatch(path):
                    return upload, found.group("case_no")
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        upload = self.upload_for(scope)
        if upload is None:
            await self.limited(scope, receive, send, self.limit)
            return
        route, spelt = upload
        case_no = canonical_case_no(spelt)  # the slots' key: every spelling of a case is one case
        try:
            uploader = await route.uploader(scope, spelt)
        except Exception as exc:  # the database's failure: answered as a route's would be, by the app's handler
            handler = _handler_for(scope, exc)
            if handler is None:
                raise
            logger.warning("POST %s: the upload check failed, nothing of the body read: %r", scope.get("path"), exc)
            response = await handler(Request(scope), exc)  # may raise again: then a 500, as from a route
            await response(scope, _no_body(), send)
            return
        if uploader is Uploader.SIGNED_OUT:
            await self.app(_without_body(scope), _no_body(), send)
        elif uploader is Uploader.OTHER:
            await self.limited(scope, receive, send, self.limit)
        elif self.in_flight >= self.max_uploads or self.in_flight_by_case.get(case_no, 0) >= self.max_uploads_per_case:
            retry = [(b"retry-after", str(BUSY_RETRY_AFTER_S).encode())]
            await self.refuse(scope, send, 503, BUSY_TEXT, ("upload_busy", {}), retry)
        else:
            self.in_flight += 1
            self.in_flight_by_case[case_no] = self.in_flight_by_case.get(case_no, 0) + 1
            try:
                await self.limited(scope, receive, send, route.limit, deadline_s=self.upload_deadline_s)
            finally:
                self.in_flight -= 1
                if (left := self.in_flight_by_case.pop(case_no) - 1) > 0:
                    self.in_flight_by_case[case_no] = left

    async def limited(
        self, scope: Scope, receive: Receive, send: Send, limit: int, *, deadline_s: float | None = None
    ) -> None:
        """The app, given at most ``limit`` bytes of the request's body, all of it within ``deadline_s`` (408)."""
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            await self.too_large(scope, send, limit)
            return
        received = 0
        started = over = slow = False
        loop = asyncio.get_running_loop()
        until = None if deadline_s is None else loop.time() + deadline_s

        async def counted_receive() -> Message:
            nonlocal received, over, slow
            if until is None or over:
                message = await receive()
            else:
                try:
                    message = await asyncio.wait_for(receive(), max(0.0, until - loop.time()))
                except TimeoutError:
                    slow = True
                    raise BodyTooSlow from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    over = True
                    raise BodyTooLarge
            return message

        async def tracked_send(message: Message) -> None:
            nonlocal started
            if over or slow:  # the app's answer to a body cut off (a form parser's 400): the answer is the 413/408
                if not started:
                    started = True
                    await (self.too_large(scope, send, limit) if over else self.too_slow(scope, send, deadline_s))
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted_receive, tracked_send)
        except BodyTooLarge:
            if not started:
                await self.too_large(scope, send, limit)
        except BodyTooSlow:
            if not started:
                await self.too_slow(scope, send, deadline_s)

    async def too_large(self, scope: Scope, send: Send, limit: int) -> None:
        detail = f"请求体超过 {limit} 字节。 / request body larger than {limit} bytes"
        await self.refuse(scope, send, 413, detail, ("upload_too_large", {"max": limit}))

    async def too_slow(self, scope: Scope, send: Send, deadline_s: float | None) -> None:
        n = f"{deadline_s or 0:g}"
        detail = (
            f"上传未能在 {n} 秒内完成，请检查网络后重试。 / the upload did not arrive within {n} s: "
            "check the connection and try again"
        )
        await self.refuse(scope, send, 408, detail, ("upload_too_slow", {"n": n}))

    async def refuse(
        self,
        scope: Scope,
        send: Send,
        status: int,
        detail: str,
        page: tuple[str, dict[str, object]],
        headers: list[tuple[bytes, bytes]] | None = None,
    ) -> None:
        """Answer ``status``: a page's request with the page saying ``error.<page key>`` (``refusal_page``), any
        other with JSON ``{"detail": detail}`` (both languages)."""
        response = None if self.refusal_page is None else self.refusal_page(scope, status, *page)
        if response is None:
            await _refuse(send, status, detail, headers)
            return
        for name, value in headers or []:
            response.headers[name.decode()] = value.decode()
        await response(scope, _no_body(), send)


def _handler_for(scope: Scope, exc: Exception) -> Callable[[Request, Exception], Awaitable[Response]] | None:
    """The app's handler of ``exc`` (the nearest of its classes'), as its exception middleware would choose it for
    a route: a deadlock the database broke is a 503 "try again" there, and must be here too."""
    handlers = getattr(scope.get("app"), "exception_handlers", {})
    for cls in type(exc).__mro__:
        handler = handlers.get(cls)
        if handler is not None:
            if inspect.iscoroutinefunction(handler):
                return cast(Callable[[Request, Exception], Awaitable[Response]], handler)
            return functools.partial(run_in_threadpool, handler)
    return None


def _without_body(scope: Scope) -> Scope:
    """The request as one without a body: its route reads an empty form and refuses it for what its headers lack."""
    headers = [(name, value) for name, value in scope.get("headers") or [] if name.lower() not in _BODY_HEADERS]
    return {**scope, "headers": headers}


def _no_body() -> Receive:
    """A ``receive`` of an empty body; asked again (nothing of ours waits for the client), the client is gone.
    The real body is never read."""
    given = False

    async def receive() -> Message:
        nonlocal given
        if given:
            return {"type": "http.disconnect"}
        given = True
        return {"type": "http.request", "body": b"", "more_body": False}

    return receive


async def _refuse(send: Send, status: int, detail: str, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    body: Any = {"detail": detail}
    payload = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})
