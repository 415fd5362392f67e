"""``GET /live``: the one live stream of a browser tab, and the views that say what it sends.

A page that updates itself registers a *view* (:func:`live_view`): a function that, given the changes since the last
message (:class:`server.core.live.Change`), renders the page's fragments that changed — HTML elements with an ``id``
and ``hx-swap-oob="true"``, which htmx swaps into the page. The page passes ``live_url=page.live_url("<view>",
**params)`` to its template (``base.html`` then includes ``_live.html``); the stream renders the view in its user's
name, on a short read-only database session of its own, with the same access checks as the page: a change itself
carries nothing a user may not see.

Messages (each with ``id: <epoch>.<seq>`` but ``signin``): ``update`` (the fragments), ``heartbeat`` (every
``[web] heartbeat_s``; data: the server's time), ``gap`` (the changes since the page's ``since`` or the browser's
``Last-Event-ID`` cannot be replayed, or changes were missed — the stream fell behind, or the court's live feed lost
some: reload; data: why), ``signin`` (the session ended). The stream re-checks its session at every render and at
least every :data:`SESSION_RECHECK_S`, and ends after ``[web] stream_max_s`` (the browser reconnects at once with its
``Last-Event-ID`` and misses nothing).
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass
from typing import Annotated, Any

from anyio import to_thread
from fastapi import APIRouter, Header, Query, Request
from sqlalchemy.orm import Session

from server.api.deps import ContextDep, bearer_token
from server.auth.models import User
from server.auth.sessions import resolve_session
from server.context import ServerContext
from server.core.base import utc_now
from server.core.db import READ_ONLY
from server.core.live import Change, Position
from server.errors import NotFound
from server.web.deps import PageLogin, SignInRequired, find_page_login, page_language
from server.web.i18n import Translator
from server.web.routing import PageRoute
from server.web.security import csrf_token_for
from server.web.sse import EventStream, message, retry

logger = logging.getLogger(__name__)

router = APIRouter(route_class=PageRoute, include_in_schema=False)

SESSION_RECHECK_S = 30.0
RECONNECT_MS = 1000


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


#: A view: (what to render with, the changes) → the HTML of its changed fragments ("" for nothing to send).
View = Callable[[LiveRender, list[Change]], str]
_VIEWS: dict[str, View] = {}


def live_view(name: str) -> Callable[[View], View]:
    """Register the decorated function as the live view ``name``."""

    def register(function: View) -> View:
        assert name not in _VIEWS, f"live view {name!r} registered twice"
        _VIEWS[name] = function
        return function

    return register


@router.get("/live")
async def live(
    request: Request,
    context: ContextDep,
    view: Annotated[str, Query(max_length=32, pattern=r"^[a-z_]+$")] = "overview",
    since: Annotated[str | None, Query(max_length=64)] = None,
    case_no: Annotated[str | None, Query(max_length=64)] = None,
    device_id: Annotated[str | None, Query(max_length=64)] = None,
    last_event_id: Annotated[str | None, Header(max_length=64)] = None,
) -> EventStream:
    """The live stream of a page (Server-Sent Events: update, heartbeat, gap, signin)."""
    login = await _login(request, context)
    if login is None:
        raise SignInRequired(request.url.path)
    render = _VIEWS.get(view)
    if render is None:
        raise NotFound(f"no live view {view!r}")
    params = {k: v for k, v in (("case_no", case_no), ("device_id", device_id)) if v is not None}
    after = Position.parse(last_event_id) or Position.parse(since)
    stream = _Stream(context, login, page_language(request), render, params)
    return EventStream(stream.messages(after), write_timeout_s=context.settings.web.write_timeout_s)


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
        self, context: ServerContext, login: PageLogin, t: Translator, view: View, params: dict[str, str]
    ) -> None:
        self.context = context
        self.login = login
        self.t = t
        self.view = view
        self.params = params
        self.signed_in = True
        self.failed = False
        self.state: dict[str, Any] = {}
        self.csrf_token = csrf_token_for(login.secret) if login.via_cookie else ""

    async def messages(self, after: Position | None) -> AsyncGenerator[bytes, None]:
        hub, settings = self.context.live, self.context.settings.web
        subscription, covered = hub.subscribe()
        try:
            yield retry(RECONNECT_MS)
            if after is not None:
                missed = hub.since(after, covered)
                if missed is None:
                    yield message("gap", "reload", id=str(covered))
                    return
                if missed:
                    html = await self._render([change for _seq, change in missed])
                    if self._ending():
                        yield self._ending()
                        return
                    if html:
                        yield message("update", html, id=str(covered))
            yield self._heartbeat(covered)
            deadline = time.monotonic() + settings.stream_max_s
            checked = time.monotonic()
            while not subscription.closed and (left := deadline - time.monotonic()) > 0:
                numbered = await subscription.wait(min(settings.heartbeat_s, left))
                if subscription.gap is not None:  # "overflow": too slow; "feed": the court's feed lost changes
                    yield message("gap", subscription.gap, id=str(covered))
                    return
                if subscription.closed:
                    return
                if numbered:
                    covered = Position(hub.epoch, numbered[-1][0])
                    html = await self._render([change for _seq, change in numbered])
                    checked = time.monotonic()
                elif time.monotonic() - checked > SESSION_RECHECK_S:
                    html = ""
                    self.signed_in = await to_thread.run_sync(self._session_alive)
                    checked = time.monotonic()
                else:
                    html = ""
                if self._ending():
                    yield self._ending()
                    return
                yield message("update", html, id=str(covered)) if html else self._heartbeat(covered)
        finally:
            hub.unsubscribe(subscription)

    def _ending(self) -> bytes:
        """The stream's last message, if it must end: the session ended, or the view failed (reload)."""
        if not self.signed_in:
            return message("signin")
        if self.failed:
            return message("gap", "error")
        return b""

    @staticmethod
    def _heartbeat(covered: Position) -> bytes:
        return message("heartbeat", utc_now().isoformat(timespec="seconds"), id=str(covered))

    async def _render(self, changes: list[Change]) -> str:
        return await to_thread.run_sync(self._render_now, changes)

    def _read_session(self) -> Session:
        context = self.context
        return context.session_factory(bind=context.engine.execution_options(**READ_ONLY))

    def _session_alive(self) -> bool:
        with self._read_session() as session:
            return self._user(session) is not None

    def _user(self, session: Session) -> User | None:
        login = self.login
        resolved = resolve_session(session, secret=login.secret, via_cookie=login.via_cookie, now=utc_now())
        return resolved[1] if resolved is not None else None

    def _render_now(self, changes: list[Change]) -> str:
        with self._read_session() as session:
            user = self._user(session)
            if user is None:
                self.signed_in = False
                return ""
            try:
                render = LiveRender(session, user, self.t, self.params, self.context, self.csrf_token, self.state)
                return self.view(render, changes)
            except Exception:  # a view's bug ends this stream (the page reloads), not the server
                logger.exception("live view failed for %s", user.username)
                self.failed = True
                return ""
