"""Logging in and out: a session cookie for the browser and a bearer token for API clients."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request, Response, status

from server.api.deps import SESSION_COOKIE, ContextDep, CurrentUser, LoginDep, SessionDep
from server.api.routing import ValidatedRoute
from server.api.schemas import AccessCodeLogin, LoginPublic, LoginRequest, MePublic
from server.audit.service import record_audit
from server.auth.access import Role
from server.auth.access_codes import code_matches, find_code
from server.auth.client_address import client_address
from server.auth.errors import NotAuthenticated, TooManyAttempts
from server.auth.models import User
from server.auth.passwords import hash_password, needs_rehash, verify_password
from server.auth.sessions import issue_session, revoke_session
from server.auth.throttle import ThrottleLimits, begin_login_attempt, forget_login_attempt
from server.auth.users import assigned_case_nos, find_user
from server.config import AuthSettings
from server.core.base import utc_now

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/auth", tags=["auth"], route_class=ValidatedRoute)

WRONG_CREDENTIALS = "wrong username or password"
WRONG_CODE = "wrong case number or access code"


def client_ip(request: Request, context: ContextDep) -> str:
    """The client's address: the socket's peer, or behind a trusted proxy the one it forwarded
    (:mod:`server.auth.client_address`)."""
    peer = request.client.host if request.client is not None else None
    forwarded = request.headers.getlist("X-Forwarded-For")
    return client_address(peer, forwarded, context.settings.http.trusted_proxies)


def throttle_limits(settings: AuthSettings) -> ThrottleLimits:
    return ThrottleLimits(
        pair_max=settings.login_max_failures,
        address_max=settings.login_address_max_failures,
        window_s=settings.login_window_s,
        user_max=settings.login_user_max_failures,
        user_window_s=settings.login_user_window_s,
    )


@router.post(
    "/login",
    responses={
        401: {"description": "Wrong username or password"},
        429: {"description": "Too many failed logins; the Retry-After header and the detail say when to retry"},
    },
)
def login(
    body: LoginRequest, request: Request, response: Response, session: SessionDep, context: ContextDep
) -> LoginPublic:
    """Log in: set the HttpOnly session cookie and return a bearer token; failures are throttled per username and
    address, per address, and (more loosely) per username; a 429 says when to retry."""
    settings = context.settings.auth
    now = utc_now()
    ip = client_ip(request, context)
    try:
        attempt_id = begin_login_attempt(
            session, username=body.username, client_ip=ip, now=now, limits=throttle_limits(settings)
        )
    except TooManyAttempts:
        logger.warning("login throttled: username %r from %s", body.username, ip)
        raise
    user = find_user(session, username=body.username)
    session.commit()  # no transaction (on SQLite: no write lock) held while the password is checked
    password_ok = verify_password(user.password_hash if user is not None else None, body.password)
    if user is None or not password_ok or user.disabled:
        reason = "unknown user" if user is None else "wrong password" if not password_ok else "disabled"
        record_audit(
            session, actor=None, action="login.failed", target=body.username, details={"ip": ip, "reason": reason}
        )
        session.commit()
        logger.warning("failed login: username %r from %s (%s)", body.username, ip, reason)
        raise NotAuthenticated(WRONG_CREDENTIALS)
    forget_login_attempt(session, attempt_id=attempt_id)
    if needs_rehash(user.password_hash):
        user.password_hash = hash_password(body.password)
    return _logged_in(session, user, response, context, ip=ip, details={"ip": ip})


@router.post(
    "/access-code",
    responses={
        401: {"description": "Wrong case number or access code"},
        429: {"description": "Too many failed attempts; the Retry-After header and the detail say when to retry"},
    },
)
def access_code_login(
    body: AccessCodeLogin, request: Request, response: Response, session: SessionDep, context: ContextDep
) -> LoginPublic:
    """Sign in as the debtor of a case with the access code printed for the debtor: a session for that case only.
    Failures are throttled like logins (the case number counts as the username)."""
    now = utc_now()
    ip = client_ip(request, context)
    who = f"case:{body.case_no}"
    try:
        attempt_id = begin_login_attempt(
            session, username=who, client_ip=ip, now=now, limits=throttle_limits(context.settings.auth)
        )
    except TooManyAttempts:
        logger.warning("access code sign-in throttled: case %r from %s", body.case_no, ip)
        raise
    row = find_code(session, case_no=body.case_no)
    user = session.get(User, row.user_id) if row is not None else None
    session.commit()  # no transaction held while the code is checked
    if not code_matches(row, body.code) or user is None or user.disabled:
        record_audit(session, actor=None, action="login.failed", target=who[:128], details={"ip": ip, "via": "code"})
        session.commit()
        logger.warning("failed access code sign-in: case %r from %s", body.case_no, ip)
        raise NotAuthenticated(WRONG_CODE)
    forget_login_attempt(session, attempt_id=attempt_id)
    return _logged_in(session, user, response, context, ip=ip, details={"ip": ip, "case_no": body.case_no})


def _logged_in(
    session: SessionDep, user: User, response: Response, context: ContextDep, *, ip: str, details: dict[str, str]
) -> LoginPublic:
    """Start the session of ``user``: its cookie on ``response``, its bearer token in the answer."""
    settings = context.settings.auth
    issued = issue_session(session, user=user, now=utc_now(), ttl_s=settings.session_ttl_s, client_ip=ip)
    record_audit(session, actor=user, action="login", target=user.username, details=details)
    session.commit()
    logger.info("login: %s (%s) from %s", user.username, user.role, ip)
    response.set_cookie(
        SESSION_COOKIE,
        issued.cookie,
        max_age=settings.session_ttl_s,
        path="/",
        secure=settings.cookie_secure,
        httponly=True,
        samesite="strict",
    )
    return LoginPublic(access_token=issued.token, expires_at=issued.expires_at, user=me_public(session, user))


@router.post("/logout", status_code=status.HTTP_204_NO_CONTENT)
def logout(login: LoginDep, response: Response, session: SessionDep) -> None:
    """Log out: end this login (its cookie and its bearer token alike) and clear the cookie."""
    revoke_session(session, session_id=login.session_id, now=utc_now())
    record_audit(session, actor=login.user, action="logout", target=login.user.username)
    session.commit()
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")


@router.get("/me")
def me(user: CurrentUser, session: SessionDep) -> MePublic:
    """The logged-in user, with the cases assigned to them."""
    return me_public(session, user)


def me_public(session: SessionDep, user: User) -> MePublic:
    return MePublic(
        username=user.username,
        full_name=user.full_name,
        role=Role(user.role),
        disabled=user.disabled,
        created_at=user.created_at,
        case_nos=assigned_case_nos(session, user=user),
    )
