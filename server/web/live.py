"""``GET /live``: the one live stream of a browser tab, and the views that say what it sends.

A page that updates itself registers a *view* (:func:`live_view`): a function that, given the changes since the last
message (:class:`server.core.live.Change`), renders the page's fragments that changed — HTML elements with an ``id``
and ``hx-swap-oob="true"``, which htmx swaps into the page. The page passes ``live_url=page.live_url("<view>",
**params)`` to its template (``base.html`` then includes ``_live.html``); the stream renders the view in its user's
name, in its page's language (``lang``), on a read-only session of its own, with the page's access checks.

A view returns its parts by name (key → HTML); the stream sends a part only when it differs from what the browser
has of it, so an ``update`` comes only when what its user sees changed — never because something they may not see
(a debtor's seal heard from, another case) happened. A view registered ``whole=True`` renders every part of its
page when asked with ``changes=None``: its page passes the digest of those parts (:func:`page_digest`, taken before
the page reads the database), and its stream starts by rendering them again and sending them if they differ — so a
change between the page and its stream is delivered, and none is sent twice. Its messages' ids are that digest (a
reconnect's ``Last-Event-ID`` says what the browser has). Other views (the overview) replay the changes after the
page's position; their ids are positions sealed by the hub (:meth:`LiveHub.token`), which do not show how much
happened in the court between two of them. Parts whose name begins with ``+`` (the timeline's new rows) are sent
whenever not empty and remembered by no digest.

Messages: ``update`` (the fragments; with an id), ``heartbeat`` (every ``[web] heartbeat_s``; data: JSON, ``time``,
and ``court`` — :mod:`server.core.receiving`, also sent at once when it changes — for a user who may see the seals'
connections only, never the debtor, who would learn when the court is deaf; a replayed view's id: the position its
stream covered, so that a quiet page resumes there, not at its page's position, which a busy court outruns), ``gap``
(the changes since the page or the browser's ``Last-Event-ID`` cannot be replayed, or changes were missed — the
stream fell behind, or the court's live feed lost some: reload; data: why), ``signin`` (the session ended). The
stream re-checks its session at every render and at least every :data:`SESSION_RECHECK_S`, and ends after ``[web]
stream_max_s`` (the browser reconnects at once with its ``Last-Event-ID`` and misses nothing).

Every stream renders every change in its user's name: one sign-in session holds at most :data:`STREAMS_PER_SESSION`
at once, one user :data:`STREAMS_PER_USER`, the process ``[web] max_streams`` in all (:data:`EVERY_STREAM`); one
more is refused (``429``, ``Retry-After``), its tab shows its stale banner and tries again later (htmx's SSE
extension, with a growing delay; app.js reloads the page at most once a minute). The renders run on threads of their
own, at most :data:`LIVE_RENDERS` at once. A page's script names its tab (``tab``: a random :data:`TAB_ID` per page
load): a stream of the same session and tab takes the place of the one before it (which says ``gap``: ``displaced``,
and ends) instead of counting against the caps (a tab whose network vanished reconnects at once). The key is the
session's and the tab's: a tab id guessed or copied by another session or user displaces nothing of theirs.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import math
import re
import time
import weakref
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass
from typing import Annotated, Any

from anyio import CapacityLimiter, to_thread
from fastapi import APIRouter, Header, Query, Request
from sqlalchemy.orm import Session

from server.api.deps import ContextDep, bearer_token
from server.api.schemas import ONE_LINE
from server.auth.access import Permission, has_permission
from server.auth.errors import Forbidden
from server.auth.models import User
from server.auth.sessions import resolve_session
from server.context import ServerContext
from server.core.base import utc_now
from server.core.db import READ_ONLY
from server.core.live import Change, Position, Subscription, TooManySubscriptions
from server.core.receiving import Receiving
from server.errors import NotFound
from server.web.deps import Page, PageLogin, SignInRequired, find_page_login, page_language
from server.web.i18n import Translator
from server.web.routing import PageRoute
from server.web.security import csrf_token_for
from server.web.sse import EventStream, StreamRefused, message, retry

logger = logging.getLogger(__name__)

router = APIRouter(route_class=PageRoute, include_in_schema=False)

SESSION_RECHECK_S, RECONNECT_MS = 30.0, 1000
#: The most live streams one sign-in session holds at once (one per tab: a browser allows about six connections
#: per server in all), and one user across their sessions.
STREAMS_PER_SESSION, STREAMS_PER_USER = 8, 16
EVERY_STREAM = "court"  # the owner every stream of the process counts against: at most [web] max_streams of them
#: The most live renders at once, on threads of their own (the pages and the API keep anyio's other threads).
LIVE_RENDERS = 4
#: How long a refused stream's browser is told to wait (``Retry-After``).
REFUSED_RETRY_S = 30
#: A tab id (``tab``, made by app.js for each page load): any other value is taken for none.
TAB_ID = re.compile(r"[A-Za-z0-9_-]{16,32}")
TOO_MANY = "实时连接过多：请关闭本站的其他标签页 / Too many live connections: close other tabs of this site"
FULL = "服务器的实时连接已满，请稍后再试 / The server has as many live connections as it may: try again later"

_limiters: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, CapacityLimiter] = weakref.WeakKeyDictionary()


def _limiter() -> CapacityLimiter:
    """The live renders' limiter of the running event loop (one per loop: a limiter belongs to its loop)."""
    loop = asyncio.get_running_loop()
    if (limiter := _limiters.get(loop)) is None:
        limiter = _limiters[loop] = CapacityLimiter(LIVE_RENDERS)
    return limiter


@dataclass(frozen=True)
class LiveRender:
    """What a view renders with: a read-only session, the stream's user, their language, the view's parameters,
    the CSRF token of the stream's session (for the forms of its fragments) and ``state``, the view's own memory for
    the length of the stream (e.g. which elements the page has)."""

    session: Session
    user: User
    t: Translator
    params: dict[str, str]
    context: ServerContext
    csrf_token: str
    state: dict[str, Any]


#: A view: (what to render with, the changes — ``None``: every part of the page) → its parts by name.
View = Callable[[LiveRender, list[Change] | None], dict[str, str]]
_VIEWS: dict[str, tuple[View, bool]] = {}


def live_view(name: str, *, whole: bool = False) -> Callable[[View], View]:
    """Register the decorated function as the live view ``name`` (``whole``: it renders every part when asked with
    ``changes=None``, and its page passes :func:`page_digest`)."""

    def register(function: View) -> View:
        assert name not in _VIEWS, f"live view {name!r} registered twice"
        _VIEWS[name] = (function, whole)
        return function

    return register


#: Hex digits of a part's digest: its changes are told apart but for one in 4 billion.
DIGEST_HEX = 8


def _digest(html: str) -> str:
    return hashlib.sha256(html.encode()).hexdigest()[:DIGEST_HEX]


def part_digests(parts: dict[str, str]) -> dict[str, str]:
    return {k: _digest(v) for k, v in parts.items() if not k.startswith("+")}


def digest_of(digests: dict[str, str]) -> str:
    """What a browser has of a page's parts: their digests in the order of their names (a case page's six: 48
    characters, within the 64 of ``since`` and ``Last-Event-ID``)."""
    return "".join(digest for _name, digest in sorted(digests.items()))


def _known(given: str | None, names: list[str]) -> dict[str, str]:
    """The digests by name that ``given`` (a :func:`digest_of` of parts named ``names``) stands for, or none."""
    if not given or len(given) != DIGEST_HEX * len(names):
        return {}
    return {name: given[i * DIGEST_HEX : (i + 1) * DIGEST_HEX] for i, name in enumerate(sorted(names))}


def take_digest(page: Page, session: Session, view: str, **params: str) -> None:
    """Give ``page`` the digest of the parts of the ``whole`` view ``view`` as they are now, read on the page's
    ``session`` (whose objects it then expires): a page takes it *before* it reads what it shows, so that its stream
    sends whatever changed after (a change in between is sent again at worst, never missed). Its ``live_url`` then
    carries it."""
    login = page.login
    assert login is not None
    csrf_token = csrf_token_for(login.secret) if login.via_cookie else ""
    render = LiveRender(session, login.user, page.t, params, page.context, csrf_token, {})
    page.live_digest = digest_of(part_digests(_VIEWS[view][0](render, None)))
    session.expire_all()


@router.get("/live")
async def live(
    request: Request,
    context: ContextDep,
    view: Annotated[str, Query(max_length=32, pattern=r"^[a-z_]+$")] = "overview",
    since: Annotated[str | None, Query(max_length=64)] = None,
    case_no: Annotated[str | None, Query(max_length=64, pattern=ONE_LINE)] = None,
    device_id: Annotated[str | None, Query(max_length=64, pattern=ONE_LINE)] = None,
    tab: str | None = None,
    lang: Annotated[str | None, Query(max_length=16)] = None,
    last_event_id: Annotated[str | None, Header(max_length=64)] = None,
) -> EventStream:
    """The live stream of a page (Server-Sent Events: update, heartbeat, gap, signin), in its language (``lang``)."""
    login = await _login(request, context)
    if login is None:
        raise SignInRequired(request.url.path)
    if (found := _VIEWS.get(view)) is None:
        raise NotFound(f"no live view {view!r}")
    params = {k: v for k, v in (("case_no", case_no), ("device_id", device_id)) if v is not None}
    tab = tab if tab is not None and TAB_ID.fullmatch(tab) else None
    stream = _Stream(context, login, page_language(request, lang), found[0], params, tab)
    if found[1]:
        messages = stream.whole(last_event_id or since)
    else:
        given = last_event_id or since
        after = context.live.position_of(given)
        messages = stream.replayed(after, unknown=given is not None and after is None)
    return EventStream(messages, write_timeout_s=context.settings.web.write_timeout_s)


async def _login(request: Request, context: ServerContext) -> PageLogin | None:
    """The stream's login, looked up on a session of its own (a stream holds no database session while it lasts)."""
    bearer = await bearer_token(request)
    with context.session_factory(bind=context.engine.execution_options(**READ_ONLY)) as session:
        login = find_page_login(request, session, bearer)
        if login is not None:
            session.expunge(login.user)
        return login


class _Stream:
    def __init__(
        self,
        context: ServerContext,
        login: PageLogin,
        t: Translator,
        view: View,
        params: dict[str, str],
        tab: str | None = None,
    ) -> None:
        self.context = context
        self.tab = tab
        self.login = login
        self.t = t
        self.view = view
        self.params = params
        self.signed_in = True
        self.failed = False
        self.access_lost = False  # the view's page is no longer the user's to see (a case taken away, a seal moved)
        self.state: dict[str, Any] = {}
        self.shown: dict[str, str] = {}  # part name → digest of what the browser has of it
        self.court: Receiving = "ok"  # the court's receiving state as the last heartbeat said it
        # Only to whoever may see the seals' connections: the debtor would learn when the court is deaf.
        self.tells_court = has_permission(login.user, Permission.SEAL_STATUS)
        self.csrf_token = csrf_token_for(login.secret) if login.via_cookie else ""

    def _subscribe(self) -> tuple[Subscription, Position]:
        """Subscribe to the live bus in the name of this stream's session and user, within their caps; a stream
        with a tab id takes the place of its session's stream of that tab, if any (the key: session and tab)."""
        login, session = self.login, f"session:{self.login.session_id}"
        every = self.context.settings.web.max_streams
        owners = {session: STREAMS_PER_SESSION, f"user:{login.user.id}": STREAMS_PER_USER, EVERY_STREAM: every}
        key = f"{session} tab:{self.tab}" if self.tab is not None else None
        try:
            return self.context.live.subscribe(owners, key=key)
        except TooManySubscriptions as exc:
            logger.info("live stream refused: %s", exc)
            text = FULL if exc.owner == EVERY_STREAM else TOO_MANY
            raise StreamRefused(429, text, retry_after_s=REFUSED_RETRY_S) from None

    async def whole(self, shown: str | None) -> AsyncGenerator[bytes, None]:
        """The stream of a ``whole`` view: it starts from what the browser has (``shown``: the page's digest, or the
        id of the last update it received), and its ids are digests of what the browser has."""
        subscription, _covered = self._subscribe()
        try:
            yield retry(RECONNECT_MS)
            parts = await self._render(None)
            if self._ending():
                yield self._ending()
                return
            self.shown = _known(shown, [name for name in parts if not name.startswith("+")])
            html = self._changed(parts)  # the parts that differ from what the browser has
            if html:
                yield message("update", html, id=digest_of(self.shown))
            async for chunk in self._follow(subscription, None):
                yield chunk
        finally:
            self.context.live.unsubscribe(subscription)

    async def replayed(self, after: Position | None, *, unknown: bool) -> AsyncGenerator[bytes, None]:
        """The stream of a view that replays the changes after the page's position (``after``; ``unknown``: the one
        given is no position: "gap"); its ids are positions sealed by the hub."""
        hub = self.context.live
        subscription, covered = self._subscribe()
        try:
            yield retry(RECONNECT_MS)
            if unknown:
                yield message("gap", "reload")
                return
            if after is not None:
                missed = hub.since(after, covered)
                if missed is None:
                    yield message("gap", "reload")
                    return
                if missed:
                    html = self._changed(await self._render([change for _seq, change in missed]))
                    if self._ending():
                        yield self._ending()
                        return
                    if html:
                        yield message("update", html, id=hub.token(covered))
            async for chunk in self._follow(subscription, covered):
                yield chunk
        finally:
            hub.unsubscribe(subscription)

    async def _follow(self, subscription: Subscription, covered: Position | None) -> AsyncGenerator[bytes, None]:
        """Heartbeats, on a clock of their own (a change that shows nothing neither sends nor moves one), and the
        updates of the changes as they come (``covered``: the replayed view's position)."""
        hub, settings = self.context.live, self.context.settings.web
        yield self._heartbeat(covered)
        now = time.monotonic()
        deadline, beat, checked = now + settings.stream_max_s, now + settings.heartbeat_s, now
        while not subscription.closed and (left := deadline - time.monotonic()) > 0:
            numbered = await subscription.wait(max(0.0, min(beat - time.monotonic(), left)))
            if subscription.gap is not None:  # "overflow": too slow; "feed": the court's feed lost changes
                yield message("gap", subscription.gap)
                return
            if subscription.closed:
                break
            html = ""
            if numbered:
                if covered is not None:
                    covered = Position(hub.epoch, numbered[-1][0])
                html = self._changed(await self._render([change for _seq, change in numbered]))
                checked = time.monotonic()
            elif time.monotonic() - checked > SESSION_RECHECK_S:
                self.signed_in = await to_thread.run_sync(self._session_alive, limiter=_limiter())
                checked = time.monotonic()
            if self._ending():
                yield self._ending()
                return
            if html:
                yield message("update", html, id=hub.token(covered) if covered is not None else digest_of(self.shown))
            if (due := time.monotonic() >= beat) or (self.tells_court and self.context.receiving.state != self.court):
                yield self._heartbeat(covered)
            if due:
                beat += settings.heartbeat_s * max(1, math.ceil((time.monotonic() - beat) / settings.heartbeat_s))
        if subscription.displaced:  # its tab opened another stream: this one's client is gone, or a copy (reload)
            yield message("gap", "displaced")

    def _changed(self, parts: dict[str, str]) -> str:
        """The parts that differ from what this stream sent (or its page showed) of them; remembers them. A part
        named ``+group`` is always sent and replaces, in the browser, every part named ``group …``: what the stream
        remembered of those is forgotten (else a part that comes back to what it was before the group was sent
        would not be sent again)."""
        changed = []
        for name, html in parts.items():
            if name.startswith("+"):
                group = name[1:] + " "
                self.shown = {k: v for k, v in self.shown.items() if not k.startswith(group)}
                changed.append(html)
                continue
            digest = _digest(html)
            if self.shown.get(name) != digest:
                self.shown[name] = digest
                changed.append(html)
        return "\n".join(html for html in changed if html)

    def _ending(self) -> bytes:
        """The stream's last message, if it must end: the session ended, or the view failed (reload)."""
        if not self.signed_in:
            return message("signin")
        if self.access_lost:
            return message("gap", "access")
        if self.failed:
            return message("gap", "error")
        return b""

    def _heartbeat(self, covered: Position | None) -> bytes:
        """A heartbeat (see the module's docstring); ``covered``: the replayed view's position."""
        beat = {"time": utc_now().isoformat(timespec="seconds")}
        if self.tells_court:
            self.court = beat["court"] = self.context.receiving.state
        return message("heartbeat", json.dumps(beat), id=None if covered is None else self.context.live.token(covered))

    async def _render(self, changes: list[Change] | None) -> dict[str, str]:
        return await to_thread.run_sync(self._render_now, changes, limiter=_limiter())

    def _read_session(self) -> Session:
        return self.context.session_factory(bind=self.context.engine.execution_options(**READ_ONLY))

    def _session_alive(self) -> bool:
        with self._read_session() as session:
            return self._user(session) is not None

    def _user(self, session: Session) -> User | None:
        login = self.login
        resolved = resolve_session(session, secret=login.secret, via_cookie=login.via_cookie, now=utc_now())
        return resolved[1] if resolved is not None else None

    def _render_now(self, changes: list[Change] | None) -> dict[str, str]:
        with self._read_session() as session:
            user = self._user(session)
            if user is None:
                self.signed_in = False
                return {}
            try:
                render = LiveRender(session, user, self.t, self.params, self.context, self.csrf_token, self.state)
                return self.view(render, changes)
            except (NotFound, Forbidden):  # what the page showed is no longer the user's: the reload says so
                self.access_lost = True
                return {}
            except Exception:  # a view's bug ends this stream (the page reloads), not the server
                logger.exception("live view failed for %s", user.username)
                self.failed = True
                return {}
