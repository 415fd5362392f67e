"""Courts: the courts whose case numbers this server holds, with the names and numbers printed on notices."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, status

from server.api.deps import Responses, SessionDep, requires
from server.api.routing import ValidatedRoute
from server.api.schemas import CourtCreate, CourtPublic, CourtUpdate
from server.auth.access import Permission
from server.auth.models import User
from server.seals.cases import add_court, get_court, list_courts, update_court

router = APIRouter(prefix="/courts", tags=["courts"], route_class=ValidatedRoute)

NOT_FOUND: Responses = {404: {"description": "No such court"}}
CourtCodePath = Annotated[
    str, Path(min_length=1, max_length=16, pattern=r"^[^\x00-\x1f\x7f/]*$", description="法院代字")
]


@router.get("")
def read_courts(
    _user: Annotated[User, Depends(requires(Permission.CASE_READ))], session: SessionDep
) -> list[CourtPublic]:
    """The registered courts, by code."""
    return [CourtPublic.model_validate(court) for court in list_courts(session)]


@router.post("", status_code=status.HTTP_201_CREATED, responses={409: {"description": "Court code taken"}})
def create_court(
    body: CourtCreate, clerk: Annotated[User, Depends(requires(Permission.CASE_WRITE))], session: SessionDep
) -> CourtPublic:
    """Register a court by its code and name (clerk only)."""
    court = add_court(session, actor=clerk, **body.model_dump())
    session.commit()
    return CourtPublic.model_validate(court)


@router.get("/{code}", responses=NOT_FOUND)
def read_court(
    code: CourtCodePath, _user: Annotated[User, Depends(requires(Permission.CASE_READ))], session: SessionDep
) -> CourtPublic:
    """One court."""
    return CourtPublic.model_validate(get_court(session, code=code))


@router.patch("/{code}", responses=NOT_FOUND)
def edit_court(
    code: CourtCodePath,
    body: CourtUpdate,
    clerk: Annotated[User, Depends(requires(Permission.CASE_WRITE))],
    session: SessionDep,
) -> CourtPublic:
    """Change a court's name, telephone number or address (clerk only)."""
    changes = body.model_dump(exclude_unset=True, exclude_none=True)
    court = update_court(session, actor=clerk, code=code, changes=changes)
    session.commit()
    return CourtPublic.model_validate(court)
