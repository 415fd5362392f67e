"""A cap on request bodies: no route takes more than :data:`MAX_BODY_BYTES`, so one huge request cannot cost the
server its memory. A declared ``Content-Length`` over the cap is answered 413 at once; a body streamed without one
is counted as it arrives and cut off with a 413 as soon as it passes the cap.

Upload routes (a removal request's proof files) have a larger cap, but only for whom may upload there: what
:class:`UploadRoute`'s ``uploader`` says of the request, from its headers alone, **before its body is read**. The
debtor filing on their own case gets the larger cap in one of a few *slots* (:data:`MAX_UPLOADS_IN_FLIGHT` such
uploads at once; a 503 with ``Retry-After`` beyond), shared so that nobody can hold them all:

- at most :data:`MAX_UPLOADS_PER_CASE` for one case — counted by the case's canonical number, however the path spells
  it, as the route finds the case;
- at most :data:`MAX_UPLOADS_PER_CLIENT` for one client address — the login throttle's key (an IPv6 address's /64),
  the address taken from ``X-Forwarded-For`` only behind a proxy in ``[http] trusted_proxies``; a client whose address
  is unknown (:mod:`server.auth.client_address`) is not counted by address;
- the last free slot only for a case with no upload in flight: a debtor whose upload is being received waits for it
  rather than take the last place from another case's debtor.

A slot is held only by a client that sends: an upload must bring ``[removal] upload_progress_bytes`` within every
``upload_progress_window_s`` of waiting for it (16 KiB in 15 s by default, about 1 KiB/s: a phone on a 2G/EDGE line
sends 10-30 KiB/s), or it is cut off with a 408 and its slot is free at once — a body trickling in a byte a second
does not hold a slot at all. The time the server itself takes between two reads does not count. And the whole body
must have arrived within ``[removal] upload_deadline_s``, or it is cut off with a 408 too.

Every other request's body is held to the same pace (``[removal] upload_progress_bytes`` within every
``upload_progress_window_s``) and must have arrived whole within ``[http] body_deadline_s`` (30 s by default, for at
most :data:`MAX_BODY_BYTES`): a login whose body trickles in a byte every 5 s is cut off with a 408 instead of holding
its connection for ever. Each 408 closes the connection (``Connection: close``), and so does any answer sent before
the request's body was whole (a route that refuses a request without reading it): uvicorn would otherwise keep
reading what is left of it, with no timeout, for the next request.

A request without a live session reaches its route without its body — the route refuses it (401, or the sign-in
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
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server.auth.client_address import FORWARDING_HEADERS, IPNetwork, client_address, throttle_key
from server.seals.case_numbers import canonical_case_no

logger = logging.getLogger(__name__)

#: Every JSON body of the API is a few kilobytes.
MAX_BODY_BYTES = 1024 * 1024
#: Uploads with the larger cap being received or checked at once, in one process; one more is answered 503.
MAX_UPLOADS_IN_FLIGHT = 4
#: Of those, at most this many for one case (its debtor's), one more for that case answered 503.
MAX_UPLOADS_PER_CASE = 2
#: Of those, at most this many from one client address (the login throttle's key), one more from it answered 503.
MAX_UPLOADS_PER_CLIENT = 2
#: What a request that asks for the larger cap while :data:`MAX_UPLOADS_IN_FLIGHT` others have it is told.
BUSY_TEXT = "服务器正在接收其他上传，请稍后重试。 / the server is receiving other uploads; try again shortly"
BUSY_RETRY_AFTER_S = 10
#: How long an upload with the larger cap may take to arrive, by default (a 50 MB body at 2 Mbit/s: 200 s).
UPLOAD_DEADLINE_S = 300.0
#: An upload must bring this many bytes within every :data:`UPLOAD_PROGRESS_WINDOW_S` of waiting for it, by default
#: (about 1 KiB/s; a 2G/EDGE line sends 10-30 KiB/s), or it is cut off with a 408: a trickle holds no slot.
UPLOAD_PROGRESS_BYTES, UPLOAD_PROGRESS_WINDOW_S = 16 * 1024, 15.0
#: How long an ordinary request's body (at most :data:`MAX_BODY_BYTES`) may take to arrive, by default.
BODY_DEADLINE_S = 30.0
#: The header that closes the connection after an answer (uvicorn reads it so).
CLOSE = (b"connection", b"close")
#: The headers that describe a body: a request passed on without its body has none of them.
_BODY_HEADERS = frozenset({b"content-length", b"content-type", b"transfer-encoding"})


#: Of a refusal (the request's scope, the status, its ``error.`` key and values): a page's answer, or ``None`` for JSON.
RefusalPage = Callable[[Scope, int, str, dict[str, object]], Response | None]


class BodyTooLarge(Exception):
    pass


class BodyTooSlow(Exception):
    pass


@dataclass(frozen=True)
class UploadPace:
    """How fast a body must arrive: all of it within ``deadline_s``, and ``progress_bytes`` within every
    ``progress_window_s`` spent waiting for the client (see the module's docstring). An upload's by default."""

    deadline_s: float = UPLOAD_DEADLINE_S
    progress_bytes: int = UPLOAD_PROGRESS_BYTES
    progress_window_s: float = UPLOAD_PROGRESS_WINDOW_S


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
    """ASGI middleware: refuse request bodies over ``limit`` bytes with 413, or arriving slower than ``body_pace``
    with 408; a POST to the path of one of ``uploads`` may have its larger limit, at ``pace``, if its ``uploader``
    allows (see the module's docstring)."""

    def __init__(
        self,
        app: ASGIApp,
        limit: int = MAX_BODY_BYTES,
        uploads: Sequence[UploadRoute] = (),
        max_uploads: int = MAX_UPLOADS_IN_FLIGHT,
        max_uploads_per_case: int = MAX_UPLOADS_PER_CASE,
        max_uploads_per_client: int = MAX_UPLOADS_PER_CLIENT,
        pace: UploadPace = UploadPace(),
        body_pace: UploadPace = UploadPace(deadline_s=BODY_DEADLINE_S),
        trusted_proxies: Sequence[IPNetwork] = (),
        refusal_page: RefusalPage | None = None,
    ) -> None:
        self.app = app
        self.limit = limit
        self.uploads = tuple(uploads)
        self.max_uploads = max_uploads
        self.max_uploads_per_case = max_uploads_per_case
        self.max_uploads_per_client = max_uploads_per_client
        self.pace = pace
        self.body_pace = body_pace
        self.trusted_proxies = tuple(trusted_proxies)
        self.refusal_page = refusal_page
        self.in_flight = 0  # uploads with the larger cap now (one event loop: no lock needed)
        self.in_flight_by_case: dict[str, int] = {}
        self.in_flight_by_client: dict[str, int] = {}

    def upload_for(self, scope: Scope) -> tuple[UploadRoute, str] | None:
        """The upload route the request is sent to, and the case its path names; ``None`` for any other."""
        if scope.get("method") == "POST":
            path = scope.get("path", "")
            for upload in self.uploads:
                if found := upload.pattern.fullmatch(path):
                    return upload, found.group("case_no")
        return None

    def client_of(self, scope: Scope) -> str | None:
        """The request's client as the slots count it (the login throttle's key), ``None`` if unknown."""
        peer = scope["client"][0] if scope.get("client") else None
        headers = Headers(scope=scope)
        forwarding = any(name in headers for name in FORWARDING_HEADERS)
        found = client_address(peer, headers.getlist("x-forwarded-for"), self.trusted_proxies, forwarding=forwarding)
        return None if found.address is None else throttle_key(found.address)

    def refusal(self, case_no: str, client: str | None) -> str | None:
        """Why an upload of ``case_no`` from ``client`` gets no slot now, or ``None`` if it gets one."""
        free, of_case = self.max_uploads - self.in_flight, self.in_flight_by_case.get(case_no, 0)
        if free <= 0:
            return "every upload slot is taken"
        if of_case >= self.max_uploads_per_case:
            return f"case {case_no} holds {of_case} upload slots"
        if client is not None and self.in_flight_by_client.get(client, 0) >= self.max_uploads_per_client:
            return f"client {client} holds {self.in_flight_by_client[client]} upload slots"
        if free == 1 and of_case > 0:
            return f"the last upload slot is kept for a case with none, and case {case_no} has one"
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        upload = self.upload_for(scope)
        if upload is None:
            await self.limited(scope, receive, send, self.limit, self.body_pace)
            return
        route, spelt = upload
        case_no = canonical_case_no(spelt)  # the slots' key: every spelling of a case is one case
        client = self.client_of(scope)  # and the client's address
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
            await self.limited(scope, receive, send, self.limit, self.body_pace)
        elif refused := self.refusal(case_no, client):
            logger.info("POST %s answered 503, nothing of the body read: %s", scope.get("path"), refused)
            retry = [(b"retry-after", str(BUSY_RETRY_AFTER_S).encode())]
            await self.refuse(scope, send, 503, BUSY_TEXT, ("upload_busy", {}), retry)
        else:
            self.in_flight += 1
            _take(self.in_flight_by_case, case_no)
            if client is not None:
                _take(self.in_flight_by_client, client)
            try:
                await self.limited(scope, receive, send, route.limit, self.pace, upload=True)
            finally:
                self.in_flight -= 1
                _give_back(self.in_flight_by_case, case_no)
                if client is not None:
                    _give_back(self.in_flight_by_client, client)

    async def limited(
        self, scope: Scope, receive: Receive, send: Send, limit: int, pace: UploadPace, *, upload: bool = False
    ) -> None:
        """The app, given at most ``limit`` bytes of the request's body, arriving at ``pace`` (else 408); an answer
        sent before the body is whole closes the connection."""
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            await self.too_large(scope, send, limit)
            return
        has_body = b"transfer-encoding" in headers or (declared is not None and int(declared) > 0)
        received = 0
        started = over = done = False
        slow: str | None = None  # why the body was cut off as too slow: "deadline" or "stalled"
        loop = asyncio.get_running_loop()
        until = loop.time() + pace.deadline_s
        waited, progress = 0.0, 0  # in the current window: time spent waiting for the client, bytes it brought

        async def counted_receive() -> Message:
            nonlocal received, over, done, slow, waited, progress
            if over or done:
                message = await receive()
            else:
                asked = loop.time()
                stalls = pace.progress_window_s - waited < until - asked  # which of the two ends first
                try:
                    wait = min(until - asked, pace.progress_window_s - waited)
                    message = await asyncio.wait_for(receive(), max(0.0, wait))
                except TimeoutError:
                    slow = "stalled" if stalls else "deadline"
                    raise BodyTooSlow from None
                waited += loop.time() - asked
                progress += len(message.get("body", b""))
                if progress >= pace.progress_bytes:  # a new window
                    waited, progress = 0.0, 0
            if message["type"] != "http.request" or not message.get("more_body", False):
                done = True  # the body is whole (or the client gone): what the app asks for next is not timed
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
                    if over:
                        await self.too_large(scope, send, limit)
                    else:
                        await self.too_slow(scope, send, pace, slow, upload)
                return
            if message["type"] == "http.response.start":
                started = True
                if has_body and not done:  # answered before its body is whole: the rest is not read, but closed
                    message = {**message, "headers": [*message.get("headers", ()), CLOSE]}
            await send(message)

        try:
            await self.app(scope, counted_receive, tracked_send)
        except BodyTooLarge:
            if not started:
                await self.too_large(scope, send, limit)
        except BodyTooSlow:
            if not started:
                await self.too_slow(scope, send, pace, slow, upload)

    async def too_large(self, scope: Scope, send: Send, limit: int) -> None:
        detail = f"请求体超过 {limit} 字节。 / request body larger than {limit} bytes"
        await self.refuse(scope, send, 413, detail, ("upload_too_large", {"max": limit}))

    async def too_slow(self, scope: Scope, send: Send, pace: UploadPace, why: str | None, upload: bool) -> None:
        """The 408 of a body cut off as too slow (``why``: ``"stalled"`` or ``"deadline"``), an upload's or
        another's; the connection is closed (what is left of the body is not read)."""
        method, path = scope.get("method"), scope.get("path")
        zh, en, key = ("上传", "the upload", "upload") if upload else ("请求内容", "the request's body", "body")
        if why == "stalled":
            n, size = f"{pace.progress_window_s:g}", pace.progress_bytes
            logger.info("%s %s answered 408: less than %d bytes in %s s", method, path, size, n)
            detail = (
                f"{zh}过慢（{n} 秒内不足 {size} 字节），已中断，请检查网络后重试。 / {en} was too slow (less "
                f"than {size} bytes in {n} s) and was cut off: check the connection and try again"
            )
            await self.refuse(scope, send, 408, detail, (f"{key}_stalled", {"n": n, "size": size}), [CLOSE])
            return
        n = f"{pace.deadline_s:g}"
        logger.info("%s %s answered 408: the body did not arrive within %s s", method, path, n)
        detail = (
            f"{zh}未能在 {n} 秒内完成，请检查网络后重试。 / {en} did not arrive within {n} s: "
            "check the connection and try again"
        )
        await self.refuse(scope, send, 408, detail, (f"{key}_too_slow", {"n": n}), [CLOSE])

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


def _take(counts: dict[str, int], key: str) -> None:
    counts[key] = counts.get(key, 0) + 1


def _give_back(counts: dict[str, int], key: str) -> None:
    if (left := counts.pop(key) - 1) > 0:
        counts[key] = left


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
