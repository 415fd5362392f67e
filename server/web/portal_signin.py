"""The debtor's portal (被执行人服务): its front door and the list of the debtor's cases.

``GET /portal`` is where a notice's page leads (``/portal?case_no=<案号>``, the form filled in): nobody signed in
gets the form for the case number and the access code the court printed for the debtor; a debtor — signed in with
the code or with an account the clerk made — gets their cases. Signing in with the code is
:func:`server.auth.login.sign_in_with_code`, throttled exactly as ``POST /api/auth/access-code``. Other roles have
their own pages (403 here, as the policy says: only who may file a removal request uses the portal).

Portal pages send whoever is not signed in here, not to the account sign-in page (:class:`PortalRoute`).
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response, status
from fastapi.responses import RedirectResponse

from server.api.deps import SESSION_COOKIE, BearerDep, SessionDep, clear_session_cookie, client_ip, set_session_cookie
from server.api.schemas import CASE_NO_MAX, ONE_LINE
from server.auth import access
from server.auth.access import Permission
from server.auth.errors import NotAuthenticated, TooManyAttempts, UnknownClient
from server.auth.login import sign_in_with_code, sign_out
from server.seals.cases import find_case
from server.web.deps import AnonymousPage, Page, SignedInPage, find_page_login
from server.web.form_fields import AccessCodeText, CaseNoText
from server.web.removal_view import case_url, my_cases
from server.web.routing import PageRoute
from server.web.security import csrf_secret, csrf_token_for, new_pre_session_secret, set_pre_session_cookie

#: Where a signed-out portal page sends its visitor (the form of the case number and access code).
PORTAL_HOME = "/portal"


class PortalRoute(PageRoute):
    """A :class:`PageRoute` whose visitor without a session goes to the portal's own sign-in (the case number and
    the access code), not to the account sign-in page."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handle = super().get_route_handler()

        async def route_handler(request: Request) -> Response:
            response = await handle(request)
            if response.status_code == status.HTTP_303_SEE_OTHER and response.headers.get("location", "").startswith(
                "/login"
            ):
                return see_other(PORTAL_HOME)
            return response

        return route_handler


router = APIRouter(route_class=PortalRoute, include_in_schema=False)


def see_other(path: str) -> RedirectResponse:
    return RedirectResponse(path, status_code=status.HTTP_303_SEE_OTHER, headers={"Cache-Control": "no-store"})


def _sign_in_form(
    page: Page,
    *,
    case_no: str = "",
    errors: dict[str, str] | None = None,
    notice: str = "",
    status_code: int = 200,
    headers: dict[str, str] | None = None,
) -> Response:
    """The case number and access code form; its CSRF token is bound to a pre-session cookie set on the first
    visit (as the account sign-in page does)."""
    secret = csrf_secret(page.request, SESSION_COOKIE)
    new_secret = new_pre_session_secret() if secret is None else None
    token = csrf_token_for(secret or new_secret or "")
    values = {"case_no": case_no, "errors": errors or {}, "notice": notice, "csrf_token": token}
    response = page.render("portal_signin.html", status_code, **values)
    if new_secret is not None:
        set_pre_session_cookie(response, new_secret, secure=page.context.settings.auth.cookie_secure)
    response.headers.update(headers or {})
    return response


@router.get("/portal")
def portal_home(
    page: AnonymousPage,
    session: SessionDep,
    bearer: BearerDep,
    case_no: Annotated[str | None, Query(max_length=CASE_NO_MAX, pattern=ONE_LINE)] = None,
    bye: Annotated[int | None, Query(ge=0, le=1)] = None,
) -> Response:
    """The debtor's portal: sign in with the case number and the access code, or (signed in) your cases."""
    login = find_page_login(page.request, session, bearer)
    if login is None:
        notice = page.t("portal.signed_out") if bye else ""
        return _sign_in_form(page, case_no=(case_no or "").strip(), notice=notice)
    access.require(login.user, Permission.REMOVAL_FILE)
    signed_in = Page(page.request, page.context, page.t, login)
    settings = page.context.settings
    cases = my_cases(session, login.user, now=signed_in.now, offline_after_s=settings.offline_after_s)
    other = case_no is not None and find_case(session, case_no=case_no) not in [v.case for v in cases]
    return signed_in.render("portal.html", cases=cases, asked_for=case_no if other else "")


@router.post("/portal/login")
def portal_sign_in(
    page: AnonymousPage,
    request: Request,
    session: SessionDep,
    case_no: CaseNoText = "",
    code: AccessCodeText = "",
) -> Response:
    """Sign in as the debtor of a case with its access code (throttled like the API's); on to the case's page."""
    case_no, code = case_no.strip(), code.strip()
    errors = {}
    if not case_no:
        errors["case_no"] = page.t("portal.case_no_missing")
    if not code:
        errors["code"] = page.t("portal.code_missing")
    if errors:
        return _sign_in_form(page, case_no=case_no, errors=errors, status_code=422)
    settings = page.context.settings.auth
    ip = client_ip(request, page.context)
    try:
        count = page.context.metrics.count_failed_sign_in
        signed_in = sign_in_with_code(session, case_no=case_no, code=code, ip=ip, settings=settings, count=count)
    except UnknownClient:
        errors = {"code": page.t("login.client_unknown")}
        return _sign_in_form(page, case_no=case_no, errors=errors, status_code=403)
    except TooManyAttempts as exc:
        errors = {"code": page.t("portal.throttled", seconds=exc.retry_after_s)}
        headers = {"Retry-After": str(exc.retry_after_s)}
        return _sign_in_form(page, case_no=case_no, errors=errors, status_code=429, headers=headers)
    except NotAuthenticated:
        errors = {"code": page.t("portal.wrong_code")}
        return _sign_in_form(page, case_no=case_no, errors=errors, status_code=401)
    case = find_case(session, case_no=case_no)
    response = see_other(case_url(case.case_no, "/portal") if case is not None else PORTAL_HOME)
    set_session_cookie(response, signed_in.issued, settings)
    return response


@router.post("/portal/logout")
def portal_sign_out(page: SignedInPage, session: SessionDep) -> Response:
    """Sign out of the portal: end this session; back to the portal's sign-in."""
    assert page.login is not None
    sign_out(session, user=page.login.user, session_id=page.login.session_id)
    response = see_other(f"{PORTAL_HOME}?bye=1")
    clear_session_cookie(response)
    return response
