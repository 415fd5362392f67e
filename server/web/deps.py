"""What a page route depends on: the signed-in user (or a 303 to ``/login``), the CSRF check of a POST, and the
:class:`Page` it renders with — language, translator, CSRF token, the live stream's URL.

A page authenticates like the API (:mod:`server.api.deps`): the session cookie, or a bearer token (judged by the
token alone). Without a live session a page answers ``303 See Other`` to ``/login?next=<path>``; an unsafe request
must pass :func:`server.web.security.csrf_ok` (else 403). Access to cases and seals is decided by
:mod:`server.auth.access`, as for the API: a page never shows what the API would refuse.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse

from server.api.deps import SAFE_METHODS, SESSION_COOKIE, BearerDep, ContextDep, SessionDep, presented_secret
from server.auth.access import Permission, Role, has_permission
from server.auth.errors import Forbidden
from server.auth.models import User
from server.auth.sessions import resolve_session
from server.context import ServerContext
from server.core.base import utc_now
from server.core.live import Position
from server.web.i18n import LANG_COOKIE, LANGUAGES, Translator, language_of
from server.web.security import CSRF_FIELD, csrf_ok, csrf_secret, csrf_token_for
from server.web.templating import html_response, render_text


class SignInRequired(Exception):
    """No live session: the page answers 303 to the sign-in page, which leads back to ``next``."""

    def __init__(self, next_path: str) -> None:
        super().__init__("sign in first")
        self.next_path = next_path


class CsrfRefused(Forbidden):
    """A POST without either proof of coming from our pages."""


@dataclass(frozen=True)
class PageLogin:
    user: User
    session_id: int
    secret: str  # the cookie (or token) the session was found by: the live stream re-checks it
    via_cookie: bool


@dataclass
class Page:
    """One page being answered: its language, the user (``None`` before sign-in) and what every template needs."""

    request: Request
    context: ServerContext
    t: Translator
    login: PageLogin | None = None
    live_since: Position | None = None  # taken before the page reads the database: the stream resumes after it
    live_digest: str | None = None  # a whole view's: what the page shows (server.web.live.take_digest)
    now: datetime = field(default_factory=utc_now)

    @property
    def user(self) -> User | None:
        return self.login.user if self.login is not None else None

    @property
    def csrf_token(self) -> str:
        secret = csrf_secret(self.request, SESSION_COOKIE)
        return csrf_token_for(secret) if secret else ""

    def live_url(self, view: str, **params: str) -> str:
        """The live stream of this page: ``/live?view=<view>&…&lang=<the page's language>&since=<digest or sealed
        position>``. The stream speaks the page's language, not the one the language cookie says at its reconnect
        (another tab may have switched it since: this page's words must not change under it)."""
        assert self.live_since is not None
        values = {"view": view, **params, "lang": self.t.language}
        query = "&".join(f"{k}={quote(v, safe='')}" for k, v in values.items())
        return f"/live?{query}&since={self.live_digest or self.context.live.token(self.live_since)}"

    def globals(self) -> dict[str, Any]:
        user = self.user
        return {
            "t": self.t,
            "lang": self.t.language,
            "user": user,
            "role": Role(user.role) if user is not None else None,
            "csrf_field": CSRF_FIELD,
            "csrf_token": self.csrf_token,
            "path": self.request.url.path,
            "now": self.now,
            "heartbeat_s": self.context.settings.web.heartbeat_s,
            "live_url": None,
            # whether the court hears its seals: a connection state, not the debtor's (server.web.live)
            "sees_receiving": user is not None and has_permission(user, Permission.SEAL_STATUS),
        }

    def text(self, name: str, **values: Any) -> str:
        return render_text(name, {**self.globals(), **values})

    def render(self, name: str, status_code: int = 200, **values: Any) -> HTMLResponse:
        """The template ``name`` with the page's globals and ``values``, as a response with the pages' headers."""
        return html_response(self.text(name, **values), status_code)


def find_page_login(request: Request, session: SessionDep, bearer: BearerDep) -> PageLogin | None:
    presented = presented_secret(request, bearer)
    if presented is None:
        return None
    secret, via_cookie = presented
    resolved = resolve_session(session, secret=secret, via_cookie=via_cookie, now=utc_now())
    if resolved is None:
        return None
    row, user = resolved
    return PageLogin(user=user, session_id=row.id, secret=secret, via_cookie=via_cookie)


async def check_csrf(request: Request, login: PageLogin | None = None) -> None:
    """Refuse an unsafe request that carries neither ``X-Requested-With`` nor the form's token (bearer: exempt)."""
    if request.method in SAFE_METHODS or (login is not None and not login.via_cookie):
        return
    token = None
    if "form" in request.headers.get("content-type", ""):
        value = (await request.form()).get(CSRF_FIELD)
        token = value if isinstance(value, str) else None
    if not csrf_ok(request, token, SESSION_COOKIE):
        raise CsrfRefused(
            "此表单并非来自法院自己的页面（CSRF 检查）。 / "
            "this form did not come from the court's own pages (CSRF check)"
        )


def page_language(request: Request, asked: str | None = None) -> Translator:
    """The language of the request's page: ``asked`` if it is one of :data:`LANGUAGES` (a live stream's ``lang``,
    its page's), else the language cookie's."""
    return Translator(language_of(asked if asked in LANGUAGES else request.cookies.get(LANG_COOKIE)))


async def anonymous_page(request: Request, context: ContextDep) -> Page:
    """A page anyone may open (the sign-in page); its POST passes the CSRF check."""
    await check_csrf(request)
    return Page(request, context, page_language(request))


def live_position(context: ContextDep) -> Position:
    """The live bus's position, taken before the request's first database read (FastAPI solves a route's
    dependencies in the order they are declared): a change committed after that read began is replayed."""
    return context.live.position


async def signed_in_page(
    request: Request,
    context: ContextDep,
    since: Annotated[Position, Depends(live_position)],
    login: Annotated[PageLogin | None, Depends(find_page_login)],
) -> Page:
    """A page for a signed-in user: 303 to ``/login`` without one; a POST passes the CSRF check."""
    if login is None:
        raise SignInRequired(request.url.path)
    await check_csrf(request, login)
    return Page(request, context, page_language(request), login, live_since=since)


AnonymousPage = Annotated[Page, Depends(anonymous_page)]
SignedInPage = Annotated[Page, Depends(signed_in_page)]
