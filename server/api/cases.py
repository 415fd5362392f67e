"""Cases: the enforcement cases a user may see; the clerk creates and edits them and assigns people to them."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, status
from sqlalchemy import select

from server.api.case_schemas import CaseCreate, CasePublic, CaseUpdate
from server.api.deps import ContextDep, CurrentUser, Responses, SessionDep, case_with, requires
from server.api.params import UsernamePath
from server.api.routing import ValidatedRoute
from server.api.schemas import AssignmentCreate, AssignmentPublic, CaseStatusChange
from server.auth.access import Permission, case_filter
from server.auth.access_codes import change_case_status
from server.auth.models import User
from server.auth.users import assign_user, case_members, get_user, unassign_user
from server.core.base import utc_now
from server.core.live import Change
from server.seals.cases import add_case, update_case
from server.seals.models import Case, CaseStatus

router = APIRouter(prefix="/cases", tags=["cases"], route_class=ValidatedRoute)

NOT_FOUND: Responses = {404: {"description": "No such case, or not one of yours"}}


# ":path" lets a case number hold any character, even an encoded "/"; case numbers like (2021)苏0214执1234号 arrive
# percent-encoded and are decoded before routing. Routes with a suffix after the case number come first, so that
# "/cases/X/assignments" is not read as the case "X/assignments".
@router.get("/{case_no:path}/assignments", responses=NOT_FOUND)
def read_assignments(
    case: Annotated[Case, Depends(case_with(Permission.CASE_ASSIGN))], session: SessionDep
) -> list[AssignmentPublic]:
    """Who is assigned to the case: judges, officers and the parties (clerk only)."""
    return [_assignment(case.case_no, user) for user in case_members(session, case_no=case.case_no)]


@router.post("/{case_no:path}/assignments", status_code=status.HTTP_201_CREATED, responses=NOT_FOUND)
def add_assignment(
    body: AssignmentCreate,
    case: Annotated[Case, Depends(case_with(Permission.CASE_ASSIGN))],
    clerk: CurrentUser,
    session: SessionDep,
    context: ContextDep,
) -> AssignmentPublic:
    """Assign a judge or officer to the case, or make a creditor or debtor a party to it (clerk only)."""
    user = get_user(session, username=body.username)
    assign_user(session, actor=clerk, user=user, case_no=case.case_no)
    session.commit()
    context.live.publish([Change("assignment", case_no=case.case_no)])  # the user's open overview shows its seals
    return _assignment(case.case_no, user)


@router.delete("/{case_no:path}/assignments/{username}", status_code=status.HTTP_204_NO_CONTENT, responses=NOT_FOUND)
def remove_assignment(
    username: UsernamePath,
    case: Annotated[Case, Depends(case_with(Permission.CASE_ASSIGN))],
    clerk: CurrentUser,
    session: SessionDep,
    context: ContextDep,
) -> None:
    """Take a user off the case (clerk only)."""
    user = get_user(session, username=username)
    unassign_user(session, actor=clerk, user=user, case_no=case.case_no)
    session.commit()
    context.live.publish([Change("assignment", case_no=case.case_no)])  # the user's open overview drops its seals


@router.put("/{case_no:path}/status", responses=NOT_FOUND | {409: {"description": "Not from the current status"}})
def change_status(
    body: CaseStatusChange,
    case: Annotated[Case, Depends(case_with(Permission.CASE_WRITE))],
    clerk: CurrentUser,
    session: SessionDep,
    context: ContextDep,
) -> CasePublic:
    """Close the case (clerk only); a removal moves it to lifting and lifted on its own."""
    status = CaseStatus(body.status)
    change_case_status(session, actor=clerk, case_no=case.case_no, status=status, note=body.note, now=utc_now())
    session.commit()
    context.live.publish([Change("case", case_no=case.case_no)])  # the case's open pages show it
    return CasePublic.of(case)


@router.get("")
def read_cases(user: Annotated[User, Depends(requires(Permission.CASE_READ))], session: SessionDep) -> list[CasePublic]:
    """The cases you may see, by case number."""
    query = select(Case).where(case_filter(session, user, Case.case_no)).order_by(Case.case_no)
    return [CasePublic.of(case) for case in session.scalars(query)]


@router.post("", status_code=status.HTTP_201_CREATED, responses={409: {"description": "Case number taken"}})
def create_case(
    body: CaseCreate, clerk: Annotated[User, Depends(requires(Permission.CASE_WRITE))], session: SessionDep
) -> CasePublic:
    """Register an enforcement case (clerk only)."""
    case = add_case(session, actor=clerk, **body.model_dump())
    session.commit()
    return CasePublic.of(case)


@router.get("/{case_no:path}", responses=NOT_FOUND)
def read_case(case: Annotated[Case, Depends(case_with(Permission.CASE_READ))]) -> CasePublic:
    """One case."""
    return CasePublic.of(case)


@router.patch("/{case_no:path}", responses=NOT_FOUND)
def edit_case(
    body: CaseUpdate,
    case: Annotated[Case, Depends(case_with(Permission.CASE_WRITE))],
    clerk: CurrentUser,
    session: SessionDep,
    context: ContextDep,
) -> CasePublic:
    """Change a case's judge, address, what is sealed, its expiry or its parties (clerk only)."""
    changes = body.model_dump(exclude_unset=True)
    changes = {name: value for name, value in changes.items() if value is not None or name == "seizure_expires_on"}
    update_case(session, actor=clerk, case_no=case.case_no, changes=changes)
    session.commit()
    context.live.publish([Change("case", case_no=case.case_no)])  # the case's open pages show it
    return CasePublic.of(case)


def _assignment(case_no: str, user: User) -> AssignmentPublic:
    return AssignmentPublic(case_no=case_no, username=user.username, full_name=user.full_name, role=user.role)
