"""Case and court administration (clerk): the cases with their court, judge, status, seals and debtor's access code;
register a case (its court by the code its number carries, its fields), close one (no seal left bound), issue or
rotate the debtor's access code (shown this once); the courts, and registering one. The same service functions as
the API (:mod:`server.seals.cases`, :mod:`server.auth.access_codes`), which write the audit entries.

Plain forms (CSRF token): a success answers ``303`` back to the list with a message — but the access code, which is
shown on the answer itself, once (the page is never cached); a refusal shows the list again with the reason."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Form, Query, Response, status
from fastapi.responses import RedirectResponse
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from server.api.deps import SessionDep
from server.api.params import CaseNoPath
from server.api.schemas import CASE_NO_MAX, ONE_LINE
from server.auth import access
from server.auth.access import Permission
from server.auth.access_codes import change_case_status, issue_access_code
from server.auth.models import CaseAccessCode, User
from server.core.base import utc_now
from server.core.live import Change
from server.errors import AlreadyExists, Conflict, Invalid
from server.seals.cases import CASE_TRANSITIONS, add_case, add_court, list_courts
from server.seals.models import Case, CaseStatus, Seal
from server.web.deps import Page, SignedInPage
from server.web.form_fields import Note
from server.web.routing import PageRoute

router = APIRouter(route_class=PageRoute, include_in_schema=False)

Name = Annotated[str, Form(max_length=128, pattern=ONE_LINE)]
Place = Annotated[str, Form(max_length=256, pattern=ONE_LINE)]
Phone = Annotated[str, Form(max_length=32, pattern=ONE_LINE)]
RulingNo = Annotated[str, Form(max_length=64, pattern=ONE_LINE)]
DONE = ("case_created", "case_closed", "court_created")
REFUSALS = (AlreadyExists, Conflict, Invalid, ValueError)


def _clerk(page: Page, permission: Permission = Permission.CASE_WRITE) -> User:
    assert page.user is not None
    access.require(page.user, permission)
    return page.user


def _done(page: Page) -> str:
    ok = page.request.query_params.get("ok", "")
    return ok if ok in DONE else ""


def _refusal_status(exc: Exception) -> int:
    return status.HTTP_409_CONFLICT if isinstance(exc, (AlreadyExists, Conflict)) else 422


def _cases(page: Page, session: Session, *, status_code: int = 200, error: str = "", **typed: Any) -> Response:
    bound = select(Seal.case_no, func.count(Seal.id)).where(Seal.case_no.is_not(None)).group_by(Seal.case_no)
    seals = {case_no: int(count) for case_no, count in session.execute(bound)}
    codes = {
        row.case_no: row.issued_at for row in session.execute(select(CaseAccessCode.case_no, CaseAccessCode.issued_at))
    }
    cases = list(session.scalars(select(Case).order_by(Case.created_at.desc(), Case.id.desc())))
    closable = {  # the status allows it and no seal is left bound (set_case_status checks both again)
        c.case_no
        for c in cases
        if CaseStatus.CLOSED in CASE_TRANSITIONS[CaseStatus(c.status)] and not seals.get(c.case_no)
    }
    return page.render(
        "admin/cases.html",
        status_code,
        cases=cases,
        seals=seals,
        codes=codes,
        closable=closable,
        courts=list_courts(session),
        done=_done(page),
        error=error,
        typed=typed,
    )


@router.get("/admin/cases")
def cases_page(page: SignedInPage, session: SessionDep, ok: Annotated[str, Query(max_length=32)] = "") -> Response:
    """Every case with its court, status, seals and access code; register, close, issue the code (clerk)."""
    _clerk(page)
    return _cases(page, session)


@router.post("/admin/cases")
def create_case(
    page: SignedInPage,
    session: SessionDep,
    case_no: Annotated[str, Form(min_length=1, max_length=CASE_NO_MAX, pattern=ONE_LINE)],
    court: Name = "",
    judge: Name = "",
    judge_phone: Phone = "",
    address: Place = "",
    sealed_property: Place = "",
    ruling_no: RulingNo = "",
    applicant: Place = "",
    debtor: Place = "",
    seizure_expires_on: Annotated[date | None, Form()] = None,
) -> Response:
    """Register an enforcement case (its court registered the first time its code is used) (clerk)."""
    clerk = _clerk(page)
    fields = {
        "judge": judge.strip(),
        "judge_phone": judge_phone.strip(),
        "address": address.strip(),
        "sealed_property": sealed_property.strip(),
        "ruling_no": ruling_no.strip(),
        "applicant": applicant.strip(),
        "debtor": debtor.strip(),
    }
    try:
        add_case(session, actor=clerk, case_no=case_no, court=court, seizure_expires_on=seizure_expires_on, **fields)
        session.commit()
    except REFUSALS as exc:
        session.rollback()
        typed = {"case_no": case_no, "court": court, **fields}
        return _cases(page, session, status_code=_refusal_status(exc), error=page.t.refusal(exc)[:400], **typed)
    return RedirectResponse("/admin/cases?ok=case_created", status_code=status.HTTP_303_SEE_OTHER)


@router.post("/admin/cases/{case_no}/close")
def close_case(
    page: SignedInPage,
    session: SessionDep,
    case_no: CaseNoPath,
    note: Note = "",
) -> Response:
    """Close a case (clerk): no seal may be left bound to it."""
    assert page.user is not None
    case = access.case_for(session, page.user, case_no, Permission.CASE_WRITE)
    try:
        change_case_status(
            session, actor=page.user, case_no=case.case_no, status=CaseStatus.CLOSED, note=note.strip(), now=utc_now()
        )
        session.commit()
    except REFUSALS as exc:
        session.rollback()
        return _cases(page, session, status_code=_refusal_status(exc), error=page.t.refusal(exc)[:400])
    page.context.live.publish([Change("case", case_no=case.case_no)])  # the case's open pages show it
    return RedirectResponse("/admin/cases?ok=case_closed", status_code=status.HTTP_303_SEE_OTHER)


@router.post("/admin/cases/{case_no}/access-code")
def access_code(
    page: SignedInPage,
    session: SessionDep,
    case_no: CaseNoPath,
    replacing: Annotated[datetime | None, Form()] = None,
) -> Response:
    """Issue the debtor's access code of a case, or rotate it (the old one and its sessions end); shown this once.
    The form carries the time of the code it replaces (``replacing``, none for a first code): sent twice (a double
    click, the back button), or after another clerk's, it is refused with the reason (409), never shown a code that
    a later one has replaced already."""
    assert page.user is not None
    case = access.case_for(session, page.user, case_no, Permission.ACCESS_CODE_ISSUE)
    if replacing is not None and replacing.tzinfo is None:
        raise Invalid("所替换访问码的时间未带时区。 / The time of the code replaced has no zone.")
    try:
        issued = issue_access_code(session, actor=page.user, case_no=case.case_no, now=utc_now(), replacing=replacing)
        session.commit()
    except Conflict as exc:
        session.rollback()
        return _cases(page, session, status_code=_refusal_status(exc), error=page.t.refusal(exc)[:400])
    return page.render("admin/code.html", case=case, issued=issued)


@router.get("/admin/courts")
def courts_page(page: SignedInPage, session: SessionDep, ok: Annotated[str, Query(max_length=32)] = "") -> Response:
    """The registered courts; register one by its code and name (clerk)."""
    _clerk(page)
    return page.render("admin/courts.html", courts=list_courts(session), done=_done(page), error="", typed={})


@router.post("/admin/courts")
def create_court(
    page: SignedInPage,
    session: SessionDep,
    code: Annotated[str, Form(min_length=1, max_length=16, pattern=ONE_LINE)],
    name: Annotated[str, Form(min_length=1, max_length=128, pattern=ONE_LINE)],
    phone: Phone = "",
    address: Place = "",
) -> Response:
    """Register a court by its code (法院代字) and name (clerk)."""
    clerk = _clerk(page)
    try:
        add_court(session, actor=clerk, code=code, name=name, phone=phone.strip(), address=address.strip())
        session.commit()
    except REFUSALS as exc:
        session.rollback()
        typed = {"code": code, "name": name, "phone": phone, "address": address}
        return page.render(
            "admin/courts.html",
            _refusal_status(exc),
            courts=list_courts(session),
            done="",
            error=page.t.refusal(exc)[:400],
            typed=typed,
        )
    return RedirectResponse("/admin/courts?ok=court_created", status_code=status.HTTP_303_SEE_OTHER)
