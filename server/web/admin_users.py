"""User administration (clerk: ``USER_ADMIN``, ``CASE_ASSIGN``): the users, each with their role and cases; create
one (with a role, optionally assigned to a case at once), disable or enable one, assign one to a case or take them
off it. The same service functions as the API (:mod:`server.auth.users`), which write the audit entries.

Plain forms (CSRF token): a success answers ``303`` back to the list with a message; a refusal shows the list again
with the reason (409/422) and what was typed (never the password)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Path, Query, Response, status
from fastapi.responses import RedirectResponse
from sqlalchemy import select
from sqlalchemy.orm import Session

from server.api.deps import SessionDep
from server.api.schemas import CASE_NO_MAX, ONE_LINE, USERNAME_MAX
from server.auth import access
from server.auth.access import ASSIGNABLE_ROLES, Permission, Role
from server.auth.errors import Forbidden
from server.auth.models import CaseAssignment, User
from server.auth.passwords import MAX_PASSWORD_LENGTH, MIN_PASSWORD_LENGTH, hash_password
from server.auth.users import assign_user, change_user, get_user, list_users, register_user, unassign_user
from server.core.live import Change
from server.errors import AlreadyExists, Conflict, Invalid, NotFound
from server.seals.models import Case
from server.web.deps import Page, SignedInPage
from server.web.routing import PageRoute

router = APIRouter(route_class=PageRoute, include_in_schema=False)

UsernamePath = Annotated[str, Path(min_length=1, max_length=USERNAME_MAX, pattern=ONE_LINE)]
CaseNoForm = Annotated[str, Form(min_length=1, max_length=CASE_NO_MAX, pattern=ONE_LINE)]
#: The messages a success leads back with (``?ok=``): only these are shown.
DONE = ("user_created", "user_disabled", "user_enabled", "user_assigned", "user_unassigned")
#: What the business rules refuse with a reason worth showing: the form comes back with it.
REFUSALS = (AlreadyExists, Conflict, Invalid, NotFound, ValueError, Forbidden)


def _clerk(page: Page) -> User:
    assert page.user is not None
    access.require(page.user, Permission.USER_ADMIN)
    return page.user


def _list(page: Page, session: Session, *, status_code: int = 200, error: str = "", **typed: Any) -> Response:
    assignments: dict[int, list[str]] = {}
    for user_id, case_no in session.execute(select(CaseAssignment.user_id, CaseAssignment.case_no)):
        assignments.setdefault(user_id, []).append(case_no)
    ok = page.request.query_params.get("ok", "")
    return page.render(
        "admin/users.html",
        status_code,
        users=[(user, sorted(assignments.get(user.id, []))) for user in list_users(session)],
        cases=list(session.scalars(select(Case.case_no).order_by(Case.case_no))),
        roles=[role.value for role in Role],
        assignable={role.value for role in ASSIGNABLE_ROLES},
        min_password=MIN_PASSWORD_LENGTH,
        done=ok if ok in DONE else "",
        error=error,
        typed=typed,
    )


def _back(done: str) -> Response:
    return RedirectResponse(f"/admin/users?ok={done}", status_code=status.HTTP_303_SEE_OTHER)


def _refused(page: Page, session: Session, exc: Exception, **typed: Any) -> Response:
    session.rollback()
    code = status.HTTP_409_CONFLICT if isinstance(exc, (AlreadyExists, Conflict)) else 422
    code = status.HTTP_403_FORBIDDEN if isinstance(exc, Forbidden) else code
    return _list(page, session, status_code=code, error=page.t.refusal(exc)[:300], **typed)


@router.get("/admin/users")
def users_page(page: SignedInPage, session: SessionDep, ok: Annotated[str, Query(max_length=32)] = "") -> Response:
    """Every user with their role and cases; create, disable, assign (clerk)."""
    _clerk(page)
    return _list(page, session)


@router.post("/admin/users")
def create_user(
    page: SignedInPage,
    session: SessionDep,
    username: Annotated[str, Form(min_length=2, max_length=64, pattern=r"^[a-z0-9][a-z0-9._-]{1,63}$")],
    role: Annotated[Role, Form()],
    password: Annotated[str, Form(min_length=MIN_PASSWORD_LENGTH, max_length=MAX_PASSWORD_LENGTH)],
    full_name: Annotated[str, Form(max_length=128, pattern=ONE_LINE)] = "",
    case_no: Annotated[str, Form(max_length=CASE_NO_MAX, pattern=ONE_LINE)] = "",
) -> Response:
    """Create a user with a role, assigned to a case at once if one is chosen (clerk)."""
    clerk = _clerk(page)
    try:
        register_user(
            session,
            actor=clerk,
            username=username,
            role=role,
            password_hash=hash_password(password),
            full_name=full_name.strip(),
            case_nos=[case_no] if case_no else [],
        )
        session.commit()
    except REFUSALS as exc:
        return _refused(page, session, exc, username=username, full_name=full_name, role=role.value)
    return _back("user_created")


@router.post("/admin/users/{username}/disabled")
def set_disabled(
    page: SignedInPage,
    session: SessionDep,
    username: UsernamePath,
    disabled: Annotated[int, Form(ge=0, le=1)],
) -> Response:
    """Disable a user (their sign-ins end) or enable them again (clerk; not themself)."""
    clerk = _clerk(page)
    user = get_user(session, username=username)
    try:
        change_user(session, actor=clerk, user=user, disabled=bool(disabled))
        session.commit()
    except REFUSALS as exc:
        return _refused(page, session, exc)
    return _back("user_disabled" if disabled else "user_enabled")


@router.post("/admin/users/{username}/cases")
def assign(page: SignedInPage, session: SessionDep, username: UsernamePath, case_no: CaseNoForm) -> Response:
    """Assign a judge or officer to a case, or make a creditor or debtor a party to it (clerk)."""
    clerk = _clerk(page)
    access.require(clerk, Permission.CASE_ASSIGN)
    user = get_user(session, username=username)
    try:
        assignment = assign_user(session, actor=clerk, user=user, case_no=case_no)
        session.commit()
    except REFUSALS as exc:
        return _refused(page, session, exc)
    page.context.live.publish([Change("assignment", case_no=assignment.case_no)])  # the user's open overview
    return _back("user_assigned")


@router.post("/admin/users/{username}/cases/remove")
def unassign(page: SignedInPage, session: SessionDep, username: UsernamePath, case_no: CaseNoForm) -> Response:
    """Take a user off a case (clerk)."""
    clerk = _clerk(page)
    access.require(clerk, Permission.CASE_ASSIGN)
    user = get_user(session, username=username)
    try:
        case_no = unassign_user(session, actor=clerk, user=user, case_no=case_no)
        session.commit()
    except REFUSALS as exc:
        return _refused(page, session, exc)
    page.context.live.publish([Change("assignment", case_no=case_no)])  # the user's open overview
    return _back("user_unassigned")
