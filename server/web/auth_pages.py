"""Signing in and out, changing one's password, and the language switch — with the same services as the API
(:mod:`server.auth.login`): the same throttle, the same session cookie, the same audit entries."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlsplit

from fastapi import APIRouter, Form, Query, Request, Response, status
from fastapi.responses import RedirectResponse

from server.api.deps import (
    SESSION_COOKIE,
    SessionDep,
    clear_session_cookie,
    client_ip,
    set_session_cookie,
)
from server.auth.errors import Forbidden, NotAuthenticated, TooManyAttempts, UnknownClient
from server.auth.login import change_password, sign_in, sign_out
from server.auth.passwords import MAX_PASSWORD_LENGTH, MIN_PASSWORD_LENGTH
from server.web.deps import AnonymousPage, SignedInPage, find_page_login
from server.web.form_fields import Username
from server.web.i18n import LANG_COOKIE, LANGUAGES
from server.web.routing import PageRoute
from server.web.security import csrf_secret, csrf_token_for, new_pre_session_secret, set_pre_session_cookie

router = APIRouter(route_class=PageRoute, include_in_schema=False)

NextPath = Annotated[str, Form(max_length=512)]
Secret = Annotated[str, Form(max_length=MAX_PASSWORD_LENGTH)]


def safe_next(path: str | None) -> str:
    """Where to go after signing in: a path on this server only (never ``//host`` or ``https://…``)."""
    if not path or not path.startswith("/") or path.startswith("//") or "\\" in path:
        return "/"
    parts = urlsplit(path)
    if parts.scheme or parts.netloc or any(ord(c) < 0x20 for c in path):
        return "/"
    return path if not parts.path.startswith(("/login", "/logout", "/live", "/static/")) else "/"


def _see_other(path: str) -> RedirectResponse:
    return RedirectResponse(path, status_code=status.HTTP_303_SEE_OTHER, headers={"Cache-Control": "no-store"})


def _login_form(
    page: AnonymousPage,
    *,
    next_path: str,
    status_code: int = 200,
    error: str = "",
    notice: str = "",
    username: str = "",
    headers: dict[str, str] | None = None,
) -> Response:
    secret = csrf_secret(page.request, SESSION_COOKIE)
    new_secret = new_pre_session_secret() if secret is None else None  # the first visit: a pre-session cookie
    token = csrf_token_for(secret or new_secret or "")
    values = {"next_path": next_path, "error": error, "notice": notice, "username": username, "csrf_token": token}
    response = page.render("login.html", status_code, **values)
    if new_secret is not None:
        set_pre_session_cookie(response, new_secret, secure=page.context.settings.auth.cookie_secure)
    response.headers.update(headers or {})
    return response


@router.get("/login")
def login_page(
    page: AnonymousPage,
    session: SessionDep,
    next: Annotated[str | None, Query(max_length=512)] = None,
    bye: Annotated[int | None, Query(ge=0, le=1)] = None,
) -> Response:
    """The sign-in page (a signed-in user goes on at once)."""
    if find_page_login(page.request, session, None) is not None:
        return _see_other(safe_next(next))
    return _login_form(page, next_path=safe_next(next), notice=page.t("login.signed_out") if bye else "")


@router.post("/login")
def login_submit(
    page: AnonymousPage,
    request: Request,
    session: SessionDep,
    username: Username,
    password: Secret,
    next: NextPath = "/",
) -> Response:
    """Sign in with a username and password (throttled like the API's login); on success, on to ``next``."""
    settings = page.context.settings.auth
    try:
        ip, count = client_ip(request, page.context), page.context.metrics.count_failed_sign_in
        signed_in = sign_in(session, username=username, password=password, ip=ip, settings=settings, count=count)
    except UnknownClient:
        error = page.t("login.client_unknown")
        return _login_form(page, next_path=safe_next(next), status_code=403, error=error, username=username)
    except TooManyAttempts as exc:
        error = page.t("login.throttled", seconds=exc.retry_after_s)
        headers = {"Retry-After": str(exc.retry_after_s)}
        return _login_form(page, next_path=safe_next(next), status_code=429, error=error, headers=headers)
    except NotAuthenticated:
        error = page.t("login.wrong")
        return _login_form(page, next_path=safe_next(next), status_code=401, error=error, username=username)
    response = _see_other(safe_next(next))
    set_session_cookie(response, signed_in.issued, settings)
    return response


@router.post("/logout")
def logout(page: SignedInPage, session: SessionDep) -> Response:
    """Sign out: end this session; back to the sign-in page."""
    assert page.login is not None
    sign_out(session, user=page.login.user, session_id=page.login.session_id)
    response = _see_other("/login?bye=1")
    clear_session_cookie(response)
    return response


@router.get("/account/password")
def password_page(page: SignedInPage) -> Response:
    """The form to change your own password."""
    return page.render("password.html", error="", done=False, min_length=MIN_PASSWORD_LENGTH)


@router.post("/account/password")
def password_submit(
    page: SignedInPage, request: Request, session: SessionDep, current: Secret, new: Secret, repeat: Secret
) -> Response:
    """Change your own password (your other sign-ins end)."""
    assert page.login is not None
    error = ""
    if len(new) < MIN_PASSWORD_LENGTH:
        error = page.t("password.too_short", n=MIN_PASSWORD_LENGTH)
    elif new != repeat:
        error = page.t("password.mismatch")
    else:
        try:
            change_password(
                session,
                user=page.login.user,
                session_id=page.login.session_id,
                current=current,
                new=new,
                ip=client_ip(request, page.context),
                settings=page.context.settings.auth,
            )
        except UnknownClient:
            error = page.t("login.client_unknown")
        except Forbidden:
            error = page.t("password.wrong_current")
        except TooManyAttempts as exc:
            error = page.t("login.throttled", seconds=exc.retry_after_s)
            response = page.render("password.html", 429, error=error, done=False, min_length=MIN_PASSWORD_LENGTH)
            response.headers["Retry-After"] = str(exc.retry_after_s)
            return response
    status_code = status.HTTP_422_UNPROCESSABLE_CONTENT if error else status.HTTP_200_OK
    return page.render("password.html", status_code, error=error, done=not error, min_length=MIN_PASSWORD_LENGTH)


@router.post("/lang")
def switch_language(
    page: AnonymousPage,
    lang: Annotated[str, Form(max_length=8)],
    next: NextPath = "/",
) -> Response:
    """Switch the pages' language (zh-CN or en; a cookie), then back to the page."""
    response = _see_other(safe_next(next))
    if lang in LANGUAGES:
        secure = page.context.settings.auth.cookie_secure
        response.set_cookie(LANG_COOKIE, lang, max_age=365 * 86400, path="/", secure=secure, samesite="lax")
    return response
