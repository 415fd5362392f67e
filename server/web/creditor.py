"""The creditor's view (申请执行人, phone-sized): ``/creditor`` lists their cases; ``/creditor/cases/{case_no}``
shows one — its seals (no pictures: the creditor's role has no ``snapshot:read``), its alarms (live), its removal
requests with the debtor's ground, statement and proofs — and takes a written view while the request is undecided
and within ``[removal] creditor_view_window_s`` (the window is shown).

The same services and checks as the API: ``add_view`` (:mod:`server.removal.service`), the case by
``case_for(…, REMOVAL_COMMENT)`` — the page is the party's, not the court's — a request by ``removal_request_for``,
alarms only with ``alarm:read``. A refused view is shown next to its field (422, or 409 when the time is over).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Query, Response, status
from sqlalchemy import select
from sqlalchemy.orm import Session

from server.alarms.models import Alarm
from server.alarms.state import AlarmState
from server.api.deps import SessionDep, removal_request_for
from server.api.params import CaseNoPath, RowIdPath
from server.api.schemas import MAX_ROW_ID
from server.auth import access
from server.auth.access import Permission
from server.auth.models import User
from server.core.live import Change
from server.errors import Conflict
from server.removal.service import add_view
from server.web.dashboard import AlarmRow, rows_of
from server.web.deps import Page, SignedInPage
from server.web.live import LiveRender, live_view, take_digest
from server.web.portal_signin import see_other
from server.web.removal_view import CaseView, case_url, case_view, live_case_parts, live_case_values, my_cases
from server.web.routing import PageRoute
from server.web.templating import render_text

router = APIRouter(route_class=PageRoute, include_in_schema=False)

VIEW_MAX = 4000
#: Alarms shown on a case's page: the live ones, then the latest closed ones.
MAX_ALARMS = 50


def case_alarms(session: Session, user: User, case_no: str) -> list[AlarmRow]:
    """The case's alarms (open, then acknowledged, then closed; each newest first; at most :data:`MAX_ALARMS`: no
    acknowledged or closed one pushes out an open one), or none for a role that may not read alarms."""
    if not access.has_permission(user, Permission.ALARM_READ):
        return []
    alarms: list[Alarm] = []
    for state in (AlarmState.OPEN, AlarmState.ACKNOWLEDGED, AlarmState.CLOSED):  # the limit after the order
        if len(alarms) < MAX_ALARMS:
            query = select(Alarm).where(Alarm.case_no == case_no, Alarm.state == state.value).order_by(Alarm.id.desc())
            alarms += session.scalars(query.limit(MAX_ALARMS - len(alarms)))
    return rows_of(session, user, alarms)


def _view(page: Page, session: Session, case_no: str, *, settle: bool = True) -> CaseView:
    assert page.user is not None
    context = page.context
    return case_view(
        session,
        page.user,
        case_no,
        Permission.REMOVAL_COMMENT,
        offline_after_s=context.settings.offline_after_s,
        now=page.now,
        settle_with=context if settle else None,
        before_read=lambda: take_digest(page, session, "creditor_case", case_no=case_no),
    )


def _values(page: Page, session: Session, view: CaseView, **extra: Any) -> dict[str, Any]:
    assert page.user is not None
    return {
        "view": view,
        "alarms": case_alarms(session, page.user, view.case.case_no),
        "who": "creditor",
        "added": None,
        "errors": {},
        "text": "",
        "view_max": VIEW_MAX,
        "live_url": page.live_url("creditor_case", case_no=view.case.case_no),
        **extra,
    }


@router.get("/creditor")
def creditor_home(page: SignedInPage, session: SessionDep) -> Response:
    """Your cases as the applicant for enforcement: their seals, alarms and removal requests."""
    user = page.user
    assert user is not None
    access.require(user, Permission.REMOVAL_COMMENT)
    cases = my_cases(session, user, now=page.now, offline_after_s=page.context.settings.offline_after_s)
    alarms = {v.case.case_no: case_alarms(session, user, v.case.case_no) for v in cases}
    live = {k: sum(1 for row in rows if row.alarm.state != AlarmState.CLOSED.value) for k, rows in alarms.items()}
    return page.render("creditor.html", cases=cases, live_alarms=live)


@router.get("/creditor/cases/{case_no}")
def creditor_case(
    page: SignedInPage,
    session: SessionDep,
    case_no: CaseNoPath,
    added: Annotated[int | None, Query(ge=1, le=MAX_ROW_ID)] = None,
) -> Response:
    """One of your cases: its seals, its alarms (live), its removal requests; your written view."""
    view = _view(page, session, case_no)
    return page.render("creditor_case.html", **_values(page, session, view, added=added))


@router.post("/creditor/requests/{request_id}/views")
def creditor_add_view(
    page: SignedInPage,
    session: SessionDep,
    request_id: RowIdPath,
    text: Annotated[str, Form(max_length=VIEW_MAX)] = "",
) -> Response:
    """Add your written view on a removal request of your case, before the decision and within the time."""
    user = page.user
    assert user is not None
    request = removal_request_for(session, user, request_id, Permission.REMOVAL_COMMENT, for_update=True)
    case_no = request.case_no
    error, status_code = "", status.HTTP_200_OK
    if not text.strip() or "\x00" in text:
        error, status_code = page.t("creditor.view_missing"), status.HTTP_422_UNPROCESSABLE_CONTENT
    else:
        try:
            add_view(session, actor=user, request=request, text=text.strip(), now=page.now)
            session.commit()
        except Conflict as exc:
            session.rollback()
            error, status_code = page.t("creditor.view_refused", detail=page.t.refusal(exc)), status.HTTP_409_CONFLICT
    if error:
        view = _view(page, session, case_no, settle=False)
        values = _values(page, session, view, errors={"text": error}, text=text)
        return page.render("creditor_case.html", status_code, **values)
    page.context.live.publish([Change("removal", case_no=case_no)])
    return see_other(f"{case_url(case_no, '/creditor')}?added={request_id}#request-{request_id}")


@live_view("creditor_case", whole=True)
def creditor_case_changes(live: LiveRender, changes: list[Change] | None) -> dict[str, str]:
    """The case's seals and alarms again when a change concerns them, its requests when one moved (the view being
    written is never replaced)."""
    found = live_case_values(live, changes, Permission.REMOVAL_COMMENT, "creditor")
    if found is None:
        return {}
    view, values = found
    values["alarms"] = case_alarms(live.session, live.user, view.case.case_no)
    parts = {
        "status": render_text("portal/_status.html", values),
        "alarms": render_text("creditor/_alarms.html", values),
    }
    return live_case_parts(changes, view, values, parts)
