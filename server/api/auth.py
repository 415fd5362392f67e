"""Logging in and out: a session cookie for the browser and a bearer token for API clients."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response, status

from server.api.deps import (
    ContextDep,
    CurrentUser,
    LoginDep,
    SessionDep,
    clear_session_cookie,
    client_ip,
    set_session_cookie,
)
from server.api.routing import ValidatedRoute
from server.api.schemas import AccessCodeLogin, LoginPublic, LoginRequest, MePublic
from server.auth.access import Role
from server.auth.login import SignedIn, sign_in, sign_in_with_code, sign_out
from server.auth.models import User
from server.auth.users import assigned_case_nos

router = APIRouter(prefix="/auth", tags=["auth"], route_class=ValidatedRoute)


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
    ip = client_ip(request, context)
    settings, count = context.settings.auth, context.metrics.count_failed_sign_in
    signed_in = sign_in(session, username=body.username, password=body.password, ip=ip, settings=settings, count=count)
    return _logged_in(session, signed_in, response, context)


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
    ip = client_ip(request, context)
    settings = context.settings.auth
    count = context.metrics.count_failed_sign_in
    signed_in = sign_in_with_code(session, case_no=body.case_no, code=body.code, ip=ip, settings=settings, count=count)
    return _logged_in(session, signed_in, response, context)


def _logged_in(session: SessionDep, signed_in: SignedIn, response: Response, context: ContextDep) -> LoginPublic:
    """The answer to a login: the session's cookie on ``response``, its bearer token in the body."""
    issued = signed_in.issued
    set_session_cookie(response, issued, context.settings.auth)
    return LoginPublic(access_token=issued.token, expires_at=issued.expires_at, user=me_public(session, signed_in.user))


@router.post("/logout", status_code=status.HTTP_204_NO_CONTENT)
def logout(login: LoginDep, response: Response, session: SessionDep) -> None:
    """Log out: end this login (its cookie and its bearer token alike) and clear the cookie."""
    sign_out(session, user=login.user, session_id=login.session_id)
    clear_session_cookie(response)


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
