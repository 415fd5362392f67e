"""The debtor's access code of a case: a clerk issues it, or rotates it (the old code and its sessions end). The code
is in the answer once, to be printed for the debtor, who signs in with it at ``POST /api/auth/access-code``.

A code is replaced only on purpose: ``POST`` without a body issues the first code (409 if the case has one — a
request sent twice must not leave the clerk holding a dead code); with ``{"replacing": <issued_at>}`` (the time
``GET`` answers) it rotates that code, and is refused (409) if another has been issued since."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Body, Depends, status
from pydantic import AwareDatetime, BaseModel, Field

from server.api.deps import CurrentUser, Responses, SessionDep, case_with
from server.api.routing import ValidatedRoute
from server.auth.access import Permission
from server.auth.access_codes import access_code_of, issue_access_code
from server.core.base import utc_now
from server.seals.models import Case

router = APIRouter(prefix="/cases", tags=["cases"], route_class=ValidatedRoute)

NOT_FOUND: Responses = {404: {"description": "No such case, or not one of yours"}}


class AccessCodeIssued(BaseModel):
    case_no: str
    code: str = Field(description="The new code, shown this once: print it for the debtor (被执行人查询码).")
    username: str = Field(description="The debtor account the code signs in (this case only).")
    issued_at: datetime
    rotated: bool = Field(description="True if it replaced a code: the old one and its sessions have ended.")


class AccessCodeRotation(BaseModel):
    replacing: AwareDatetime = Field(
        description="The issued_at of the code to replace (as GET answers it): refused (409) if it is not the "
        "case's code any more."
    )


class AccessCodePublic(BaseModel):
    case_no: str
    issued: bool = Field(description="Whether the case has a code (the code itself is never shown again).")
    username: str | None
    issued_at: datetime | None


@router.post(
    "/{case_no:path}/access-code",
    status_code=status.HTTP_201_CREATED,
    responses=NOT_FOUND
    | {
        409: {
            "description": "The case is lifted or closed; it has a code already (first issue); its code is not the "
            "one to replace any more (rotation)"
        }
    },
)
def issue_code(
    case: Annotated[Case, Depends(case_with(Permission.ACCESS_CODE_ISSUE))],
    clerk: CurrentUser,
    session: SessionDep,
    rotation: Annotated[AccessCodeRotation | None, Body()] = None,
) -> AccessCodeIssued:
    """Issue the debtor's first access code of the case, or (``replacing``) rotate its code (clerk); the code is shown
    this once."""
    replacing = rotation.replacing if rotation is not None else None
    issued = issue_access_code(session, actor=clerk, case_no=case.case_no, now=utc_now(), replacing=replacing)
    session.commit()
    assert issued.issued_at is not None
    return AccessCodeIssued(
        case_no=issued.case_no,
        code=issued.code,
        username=issued.username,
        issued_at=issued.issued_at,
        rotated=issued.rotated,
    )


@router.get("/{case_no:path}/access-code", responses=NOT_FOUND)
def read_code(
    case: Annotated[Case, Depends(case_with(Permission.ACCESS_CODE_ISSUE))], session: SessionDep
) -> AccessCodePublic:
    """Whether the case has a debtor's access code, and when it was issued (clerk; never the code)."""
    issued = access_code_of(session, case_no=case.case_no)
    if issued is None:
        return AccessCodePublic(case_no=case.case_no, issued=False, username=None, issued_at=None)
    return AccessCodePublic(case_no=case.case_no, issued=True, username=issued.username, issued_at=issued.issued_at)
