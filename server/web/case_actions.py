"""The case page's forms: acknowledge or close an alarm with a note; send a seal a test warning, a snapshot request or
a ping; take a removal request up, approve or reject it with reasons, send a new disarm, lift seals that do not
answer without their acknowledgement or withdraw the approval (the judge, with reasons), confirm the removal on
site and say what was found of each seal lifted without its acknowledgement. Each calls the service function the
API calls (which writes the audit entry), checks access as the API does, publishes the change on the live bus after
the commit, and answers an htmx request with the part of the page it changed — a plain form with ``303`` back to
the case page."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Form, Path, Response, status
from fastapi.responses import RedirectResponse
from pydantic import StringConstraints
from sqlalchemy.orm import Session

from seal_protocol.commands import CommandAction
from seal_protocol.signing import SigningKey
from seal_protocol.topics import DEVICE_ID_PATTERN
from server.alarms.service import acknowledge_as, close_as, get_alarm
from server.api.deps import SessionDep
from server.api.params import CaseNoPath
from server.api.removal_schemas import MAX_SEALS
from server.api.schemas import MAX_ROW_ID
from server.auth import access
from server.auth.access import Permission
from server.auth.models import User
from server.commands.service import issue_command_as
from server.core.base import utc_now
from server.core.live import Change
from server.errors import CommandsUnavailable, Conflict, Invalid, NotFound
from server.removal.disarm import approve_request, resend_disarm
from server.removal.lifting import SealFound, abort_request, confirm_lifted, lift_without_ack
from server.removal.models import RemovalRequest
from server.removal.service import reject_request, review_request
from server.removal.settler import settled_first
from server.removal.steps import get_request
from server.seals.models import Case
from server.web.case_parts import part_values, render_parts
from server.web.deps import Page, SignedInPage
from server.web.form_fields import Note, Reasons
from server.web.form_ids import FormId, first_use, sent_with
from server.web.routing import PageRoute
from server.web.templating import html_response

router = APIRouter(route_class=PageRoute, include_in_schema=False)

RowId = Annotated[int, Path(ge=1, le=MAX_ROW_ID)]
PageCommand = Annotated[str, Form(pattern=r"^(test_warning|snapshot|ping)$")]
DeviceId = Annotated[str, Form(min_length=1, max_length=64, pattern=DEVICE_ID_PATTERN.pattern)]
_DEVICE = DEVICE_ID_PATTERN.pattern.removeprefix("^").removesuffix("$")
#: The seals a judge's decision names (the checked boxes of the waiver form), one at least.
WaivedSeals = Annotated[
    list[Annotated[str, StringConstraints(max_length=64, pattern=DEVICE_ID_PATTERN.pattern)]],
    Form(min_length=1, max_length=MAX_SEALS),
]
#: What the officer found of each seal lifted without its acknowledgement: ``<device_id>:<removed|destroyed|missing>``
#: per select of the lifted form; empty for a select left unchosen (then the seal is not said of: a 409 that names it).
FoundChoices = Annotated[
    list[Annotated[str, StringConstraints(max_length=80, pattern=rf"^$|^{_DEVICE}:({'|'.join(SealFound)})$")]],
    Form(max_length=MAX_SEALS),
]


def _user(page: Page) -> User:
    assert page.user is not None
    return page.user


def _answer(page: Page, session: Session, case: Case, part: str, changes: list[Change]) -> Response:
    """After the commit: tell every open screen, then answer with the changed part (htmx: marked ``hx-swap-oob``,
    whichever of it and the stream's update comes first) or the case page."""
    page.context.live.publish(changes)
    if page.request.headers.get("HX-Request") != "true":
        url = f"/cases/{quote(case.case_no, safe='')}#case-{part}"
        return RedirectResponse(url, status_code=status.HTTP_303_SEE_OTHER)
    session.expire_all()
    values = part_values(session, _user(page), case, page.context.settings, (part,))
    # Out of band, as the live stream sends it: swapped by id when it arrives (see templates/case.html).
    return html_response(render_parts(values, t=page.t, csrf_token=page.csrf_token, parts=(part,), oob=True))


@router.post("/cases/{case_no}/alarms/{alarm_id}/ack")
def acknowledge(
    page: SignedInPage, session: SessionDep, case_no: CaseNoPath, alarm_id: RowId, note: Note = ""
) -> Response:
    """Acknowledge an open alarm of the case with a note (judge, officer, clerk)."""
    user = _user(page)
    case = access.case_for(session, user, case_no, Permission.ALARM_ACK)
    if get_alarm(session, alarm_id=alarm_id).case_no != case.case_no:
        raise NotFound(f"unknown alarm {alarm_id}")
    alarm = acknowledge_as(session, actor=user, alarm_id=alarm_id, note=note.strip())
    session.commit()
    return _answer(page, session, case, "alarms", [Change("alarm", alarm.device_id, alarm.case_no)])


@router.post("/cases/{case_no}/alarms/{alarm_id}/close")
def close(page: SignedInPage, session: SessionDep, case_no: CaseNoPath, alarm_id: RowId, note: Note = "") -> Response:
    """Close an alarm of the case with a note: dealt with, or a false alarm (judge, clerk)."""
    user = _user(page)
    case = access.case_for(session, user, case_no, Permission.ALARM_CLOSE)
    if get_alarm(session, alarm_id=alarm_id).case_no != case.case_no:
        raise NotFound(f"unknown alarm {alarm_id}")
    alarm = close_as(session, actor=user, alarm_id=alarm_id, note=note.strip())
    session.commit()
    return _answer(page, session, case, "alarms", [Change("alarm", alarm.device_id, alarm.case_no)])


@router.post("/cases/{case_no}/commands")
def send_command(
    page: SignedInPage,
    session: SessionDep,
    case_no: CaseNoPath,
    device_id: DeviceId,
    action: PageCommand,
    form_id: FormId,
) -> Response:
    """Send one of the case's seals a test warning, a snapshot request or a ping; pending until its signed answer.
    The form's one-use id (:mod:`server.web.form_ids`): the same form sent again sends nothing more."""
    user = _user(page)
    case = access.case_for(session, user, case_no, Permission.COMMAND_SEND)
    seal = access.seal_for(session, user, device_id, Permission.COMMAND_SEND)
    if seal.case_no != case.case_no:
        raise NotFound(f"unknown seal {device_id!r}")
    context = page.context
    key, ttl = _signing(page)
    now = utc_now()
    csrf = page.csrf_token
    used = first_use(session, user=user, csrf_token=csrf, device_id=seal.device_id, form_id=form_id, ttl=ttl, now=now)
    if used is None:  # sent already: answered as the first time
        session.rollback()
        return _answer(page, session, case, "commands", [])
    command = issue_command_as(
        session, actor=user, seal=seal, action=CommandAction(action), args={}, key=key, ttl=ttl, now=now
    )
    sent_with(used, command)
    session.commit()
    if context.dispatcher is not None:
        context.dispatcher.wake()
    return _answer(page, session, case, "commands", [Change("command", seal.device_id, case.case_no)])


def _request_of(
    session: Session, user: User, case_no: str, request_id: int, permission: Permission
) -> tuple[Case, RemovalRequest]:
    """The case (visible, else 404; the role may, else 403) and its request, locked for the act that follows."""
    case = access.case_for(session, user, case_no, permission)
    request = get_request(session, request_id=request_id, for_update=True)
    if request.case_no != case.case_no:
        raise NotFound(f"unknown removal request {request_id}")
    return case, request


def _decided(page: Page, session: Session, case: Case, released: list[str] | None = None) -> Response:
    """After a decision's commit (``released``: the seals a lifting unbound, each a ``binding`` change as by hand:
    their pages and every open view of the court's stock show it)."""
    if page.context.dispatcher is not None:
        page.context.dispatcher.wake()
    lifted = [Change("binding", device_id, case.case_no) for device_id in released or []]
    return _answer(page, session, case, "removal", [Change("removal", case_no=case.case_no), *lifted])


def _signing(page: Page) -> tuple[SigningKey, timedelta]:
    try:
        key = page.context.court_key.get()
    except CommandsUnavailable as exc:  # the key's path and the fix are the administrator's: in the message, not said
        raise Conflict(str(exc)).saying("refusal.commands_unavailable") from None
    return key, timedelta(seconds=page.context.settings.commands.ttl_s)


@router.post("/cases/{case_no}/removal/{request_id}/review")
def review(
    page: SignedInPage, session: SessionDep, case_no: CaseNoPath, request_id: RowId, note: Note = ""
) -> Response:
    """Take a submitted removal request up for review (judge, clerk)."""
    user = _user(page)
    case, request = _request_of(session, user, case_no, request_id, Permission.REMOVAL_REVIEW)
    review_request(session, actor=user, request=request, note=note.strip(), now=utc_now())
    session.commit()
    return _decided(page, session, case)


@router.post("/cases/{case_no}/removal/{request_id}/approve")
def approve(
    page: SignedInPage,
    session: SessionDep,
    case_no: CaseNoPath,
    request_id: RowId,
    reasons: Reasons,
    early_reasons: Note = "",
) -> Response:
    """Approve with reasons (judge): every seal of the case is sent the signed disarm; before the creditor's time
    for views ends on a ground resting on the creditor's consent or act, with no view, only with ``early_reasons``."""
    user = _user(page)
    case, request = _request_of(session, user, case_no, request_id, Permission.REMOVAL_DECIDE)
    key, ttl = _signing(page)
    early, now = early_reasons, utc_now()
    approve_request(session, actor=user, request=request, reasons=reasons, key=key, ttl=ttl, now=now, early=early)
    session.commit()
    return _decided(page, session, case)


@router.post("/cases/{case_no}/removal/{request_id}/reject")
def reject(
    page: SignedInPage, session: SessionDep, case_no: CaseNoPath, request_id: RowId, reasons: Reasons
) -> Response:
    """Reject with reasons (judge); the seals stay as they are."""
    user = _user(page)
    case, request = _request_of(session, user, case_no, request_id, Permission.REMOVAL_DECIDE)
    reject_request(session, actor=user, request=request, reasons=reasons, now=utc_now())
    session.commit()
    return _decided(page, session, case)


@router.post("/cases/{case_no}/removal/{request_id}/resend")
def resend(
    page: SignedInPage,
    session: SessionDep,
    case_no: CaseNoPath,
    request_id: RowId,
    device_id: Annotated[str, Form(max_length=64, pattern=rf"^$|{DEVICE_ID_PATTERN.pattern}")] = "",
    note: Note = "",
) -> Response:
    """Send a new signed disarm to the request's seals that are waiting for one, or to one of them (judge, clerk)."""
    user = _user(page)
    case, request = _request_of(session, user, case_no, request_id, Permission.REMOVAL_RESEND)
    key, ttl = _signing(page)
    now = utc_now()
    settled_first(
        session, request, now=now, published=lambda case_no: _removal_changed(page, case_no)
    )  # every ack is in after all: kept, and the resend is a 409
    resend_disarm(
        session, actor=user, request=request, device_id=device_id or None, note=note, key=key, ttl=ttl, now=now
    )
    session.commit()
    return _decided(page, session, case)


@router.post("/cases/{case_no}/removal/{request_id}/lift-without-ack")
def without_ack(
    page: SignedInPage,
    session: SessionDep,
    case_no: CaseNoPath,
    request_id: RowId,
    device_ids: WaivedSeals,
    reasons: Reasons,
) -> Response:
    """Decide, with reasons, that the named seals — their disarm expired unanswered, or they refused it — are lifted
    without their acknowledgement (judge); the request is disarmed once every other seal has acknowledged."""
    user = _user(page)
    case, request = _request_of(session, user, case_no, request_id, Permission.REMOVAL_DECIDE)
    now = utc_now()
    settled_first(
        session, request, now=now, published=lambda case_no: _removal_changed(page, case_no)
    )  # an ack that came a moment ago counts: kept, and a 409
    lift_without_ack(session, actor=user, request=request, device_ids=device_ids, reasons=reasons, now=now)
    session.commit()
    return _decided(page, session, case)


@router.post("/cases/{case_no}/removal/{request_id}/abort")
def abort(
    page: SignedInPage, session: SessionDep, case_no: CaseNoPath, request_id: RowId, reasons: Reasons
) -> Response:
    """Withdraw the approval, with reasons (judge): the seals are sent the signed arm and the seizure stands."""
    user = _user(page)
    case, request = _request_of(session, user, case_no, request_id, Permission.REMOVAL_DECIDE)
    key, ttl = _signing(page)
    abort_request(session, actor=user, request=request, reasons=reasons, key=key, ttl=ttl, now=utc_now())
    session.commit()
    return _decided(page, session, case)


@router.post("/cases/{case_no}/removal/{request_id}/lifted")
def lifted(
    page: SignedInPage,
    session: SessionDep,
    case_no: CaseNoPath,
    request_id: RowId,
    note: Note = "",
    found: FoundChoices = [],  # noqa: B006 - FastAPI copies a parameter's default
) -> Response:
    """Confirm on site that the seals are removed, and what was found of each seal lifted without its
    acknowledgement (officer): they are unbound and the seizure is lifted."""
    user = _user(page)
    case, request = _request_of(session, user, case_no, request_id, Permission.REMOVAL_LIFT)
    said = _found(found)
    now = utc_now()
    settled_first(  # the last ack may have arrived a moment ago, or a seal says it is armed again: kept, and a 409
        session, request, now=now, published=lambda case_no: _removal_changed(page, case_no)
    )
    released = confirm_lifted(session, actor=user, request=request, note=note.strip(), found=said, now=now)
    session.commit()
    return _decided(page, session, case, released)


def _found(choices: list[str]) -> dict[str, SealFound]:
    """The lifted form's ``found`` selects as the API's ``found``: device id → what was found (an unchosen select
    says nothing; a seal said of twice is refused)."""
    found: dict[str, SealFound] = {}
    for choice in filter(None, choices):
        device_id, _, value = choice.rpartition(":")
        if device_id in found:
            raise Invalid(f"seal {device_id!r} is said of twice").saying("refusal.found_twice", device=device_id)
        found[device_id] = SealFound(value)
    return found


def _removal_changed(page: Page, case_no: str) -> None:
    page.context.live.publish([Change("removal", case_no=case_no)])
