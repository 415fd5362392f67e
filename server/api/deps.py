"""Dependencies of the API routes, as ``Annotated`` aliases: the database session, the logged-in user, and the
objects a route acts on, looked up through the access policy (:mod:`server.auth.access`).

A request authenticates with ``Authorization: Bearer <token>`` (API clients) or the session cookie (the browser).
A cookie is sent by the browser on its own, so an unsafe request (POST, PUT, PATCH, DELETE) that relies on it must
also carry the header ``X-Requested-With``: a page on another site cannot add that header without a CORS preflight,
which this server never grants. Bearer requests need no such header: a browser never adds a bearer token by itself.
A request with a bearer token is judged by the token alone, whatever cookie comes with it (a browser that has logged
in sends its cookie along with the calls made from ``/docs``).

The bearer token is declared in the OpenAPI document as the security scheme :data:`BEARER_SCHEME` of every route that
needs a login, so Swagger UI at ``/docs`` has an "Authorize" button to paste it into.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated, Any

from fastapi import Depends, Request, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.types import Scope

from server.api.body_limit import Uploader
from server.api.params import CaseNoPath, DeviceIdPath
from server.audit.service import record_read
from server.auth import access
from server.auth.access import Permission
from server.auth.client_address import FORWARDING_HEADERS, Client, ProxyWarnings, client_address
from server.auth.errors import Forbidden, NotAuthenticated
from server.auth.models import User
from server.auth.sessions import IssuedSession, resolve_session
from server.config import AuthSettings
from server.context import ServerContext
from server.core.base import utc_now
from server.core.db import READ_ONLY, session_scope
from server.errors import NotFound
from server.removal.models import RemovalRequest
from server.removal.steps import get_request
from server.seals.models import Case, Seal

#: The ``responses=`` of a route: extra status codes for its OpenAPI description.
Responses = dict[int | str, dict[str, Any]]

SESSION_COOKIE = "seal_session"
CSRF_HEADER = "X-Requested-With"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
#: The same read of evidence by the same user within this time is one audit entry (thumbnails shown again).
READ_REPEAT_WINDOW = timedelta(minutes=10)


def get_context(request: Request) -> ServerContext:
    context: ServerContext = request.app.state.context
    return context


ContextDep = Annotated[ServerContext, Depends(get_context)]


def get_session(context: ContextDep, request: Request) -> Iterator[Session]:
    """A session per request; a GET (which never writes) reads without taking SQLite's write lock."""
    if request.method in SAFE_METHODS:
        session = context.session_factory(bind=context.engine.execution_options(**READ_ONLY))
    else:
        session = context.session_factory()
    with session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]


def audit_read(
    context: ServerContext,
    user: User,
    *,
    action: str,
    target: str,
    case_no: str | None,
    details: dict[str, Any] | None = None,
) -> None:
    """Record a read of evidence (``evidence.*`` actions) in a writing session of its own: the request's session of
    a GET only reads. Called once the read is allowed and its evidence found. The same read by the same user within
    :data:`READ_REPEAT_WINDOW` is recorded once (:func:`~server.audit.service.record_read`)."""
    with session_scope(context.session_factory) as session:
        record_read(
            session,
            actor=user,
            action=action,
            target=target,
            case_no=case_no,
            details=details,
            within=READ_REPEAT_WINDOW,
        )


def request_client(request: Request, context: ContextDep) -> Client:
    """Whom the request comes from (:func:`~server.auth.client_address.client_address`); a proxy not configured as
    it must be is logged."""
    peer = request.client.host if request.client is not None else None
    forwarding = any(name in request.headers for name in FORWARDING_HEADERS)
    forwarded = request.headers.getlist("X-Forwarded-For")
    client = client_address(peer, forwarded, context.settings.http.trusted_proxies, forwarding=forwarding)
    if client.problem:
        warnings: ProxyWarnings = request.app.state.proxy_warnings
        warnings.warn(peer, client)
    return client


def client_ip(request: Request, context: ContextDep) -> str | None:
    """The client's address: the socket's peer (whatever headers it sends), or behind a trusted proxy the one it
    forwarded; ``None`` if unknown (a trusted proxy that names no client: :mod:`server.auth.client_address`)."""
    return request_client(request, context).address


def set_session_cookie(response: Response, issued: IssuedSession, settings: AuthSettings) -> None:
    """The login's HttpOnly, same-site-only session cookie (the API's login and the sign-in page set the same)."""
    response.set_cookie(
        SESSION_COOKIE,
        issued.cookie,
        max_age=settings.session_ttl_s,
        path="/",
        secure=settings.cookie_secure,
        httponly=True,
        samesite="strict",
    )


def clear_session_cookie(response: Response) -> None:
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")


@dataclass(frozen=True)
class Login:
    """The authenticated caller: the user and the login session the request came with."""

    user: User
    session_id: int
    via_cookie: bool


BEARER_SCHEME = "BearerToken"
bearer_token = HTTPBearer(
    scheme_name=BEARER_SCHEME,
    description="The `access_token` returned by `POST /api/auth/login`. (Browsers may use the session cookie that "
    "login sets instead; a cookie-authenticated POST, PUT, PATCH or DELETE must carry the `X-Requested-With` header.)",
    auto_error=False,  # no token: the cookie is looked at, and get_login answers 401 without either
)
BearerDep = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_token)]


def presented_secret(request: Request, bearer: HTTPAuthorizationCredentials | None) -> tuple[str, bool] | None:
    """What the request authenticates with: its bearer token, else its session cookie; and whether it is the
    cookie. ``None`` without either."""
    if bearer is not None:
        return bearer.credentials, False
    if cookie := request.cookies.get(SESSION_COOKIE):
        return cookie, True
    return None


def lacks_csrf_header(request: Request, *, via_cookie: bool) -> bool:
    """Whether the request is an unsafe one, authenticated by the cookie, without :data:`CSRF_HEADER`."""
    return via_cookie and request.method not in SAFE_METHODS and not request.headers.get(CSRF_HEADER)


def get_login(request: Request, session: SessionDep, bearer: BearerDep) -> Login:
    presented = presented_secret(request, bearer)
    if presented is None:
        raise NotAuthenticated("请先登录。 / log in first")
    secret, via_cookie = presented
    resolved = resolve_session(session, secret=secret, via_cookie=via_cookie, now=utc_now())
    if resolved is None:
        raise NotAuthenticated("登录已过期或已结束，请重新登录。 / the session has expired or ended; log in again")
    row, user = resolved
    if lacks_csrf_header(request, via_cookie=via_cookie):
        raise Forbidden(
            f"以 Cookie 登录的 {request.method} 请求须带 {CSRF_HEADER} 请求头。 / "
            f"a cookie-authenticated {request.method} needs the {CSRF_HEADER} header"
        )
    return Login(user=user, session_id=row.id, via_cookie=via_cookie)


LoginDep = Annotated[Login, Depends(get_login)]


def get_current_user(login: LoginDep) -> User:
    return login.user


CurrentUser = Annotated[User, Depends(get_current_user)]


def requires(permission: Permission) -> Callable[[User], User]:
    """A dependency: the current user, if their role has ``permission`` (403 otherwise)."""

    def dependency(user: CurrentUser) -> User:
        access.require(user, permission)
        return user

    return dependency


def case_with(permission: Permission) -> Callable[[str, Session, User], Case]:
    """A dependency: the ``{case_no}`` of the path, if visible to the user (else 404) and allowed (else 403)."""

    def dependency(case_no: CaseNoPath, session: SessionDep, user: CurrentUser) -> Case:
        return access.case_for(session, user, case_no, permission)

    return dependency


def seal_with(permission: Permission) -> Callable[[str, Session, User], Seal]:
    """A dependency: the ``{device_id}`` of the path, if visible to the user (else 404) and allowed (else 403)."""

    def dependency(device_id: DeviceIdPath, session: SessionDep, user: CurrentUser) -> Seal:
        return access.seal_for(session, user, device_id, permission)

    return dependency


def seal_in_history_with(permission: Permission) -> Callable[[str, Session, User], Seal]:
    """Like :func:`seal_with`, but a seal once bound to a case of the user's stays visible (its key, its bindings)."""

    def dependency(device_id: DeviceIdPath, session: SessionDep, user: CurrentUser) -> Seal:
        return access.seal_in_history_for(session, user, device_id, permission)

    return dependency


ClerkUser = Annotated[User, Depends(requires(Permission.USER_ADMIN))]


async def api_uploader(scope: Scope, case_no: str) -> Uploader:
    """Who sends this request to the API's upload route of ``case_no``, from its headers (before its body is read:
    :class:`~server.api.body_limit.BodyLimit`), judged as :func:`get_login` and :func:`case_with` judge it."""
    return await _uploader(scope, case_no, csrf_header=True)


async def page_uploader(scope: Scope, case_no: str) -> Uploader:
    """The same for the portal's upload route: signed in as its pages are (``server.web.deps.find_page_login``);
    its form's CSRF token is in the body, checked by the route."""
    return await _uploader(scope, case_no, csrf_header=False)


async def _uploader(scope: Scope, case_no: str, *, csrf_header: bool) -> Uploader:
    request = Request(scope)  # its headers only: nothing here reads the body
    presented = presented_secret(request, await bearer_token(request))
    if presented is None:
        return Uploader.SIGNED_OUT
    context: ServerContext = scope["app"].state.context
    secret, via_cookie = presented

    def look_up() -> Uploader:
        with context.session_factory(bind=context.engine.execution_options(**READ_ONLY)) as session:
            resolved = resolve_session(session, secret=secret, via_cookie=via_cookie, now=utc_now())
            if resolved is None:
                return Uploader.SIGNED_OUT
            if csrf_header and lacks_csrf_header(request, via_cookie=via_cookie):
                return Uploader.OTHER  # the route answers 403 (get_login)
            _, user = resolved
            try:
                access.case_for(session, user, case_no, Permission.REMOVAL_FILE)
            except (NotFound, Forbidden):
                return Uploader.OTHER
            return Uploader.MAY_UPLOAD

    return await run_in_threadpool(look_up)


def removal_request_for(
    session: Session, user: User, request_id: int, permission: Permission, *, for_update: bool = False
) -> RemovalRequest:
    """The removal request, if its case is visible to the user (else 404, like one that does not exist) and the
    user may do ``permission`` (else 403); ``for_update`` locks it for the action that follows."""
    request = get_request(session, request_id=request_id, for_update=for_update)
    read, what = Permission.REMOVAL_READ, f"removal request {request_id}"
    access.check_object_visible(session, user, request.case_no, read, act=permission, what=what)
    return request
