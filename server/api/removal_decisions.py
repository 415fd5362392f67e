"""The removal request's decision and what follows: the judge (or a clerk) takes it up, the judge approves — the
signed ``disarm`` goes to every seal of the case at once — or rejects, with reasons; a seal that did not
acknowledge in time gets a new disarm; a seal that never answers is lifted without its acknowledgement, or the
approval withdrawn, by the judge's decision; an officer on site confirms the seals are removed, and the seizure is
lifted. Each answer is the request as it then stands (:class:`~server.api.removal_schemas.RemovalRequestPublic`).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from fastapi import APIRouter
from sqlalchemy.orm import Session

from server.api.deps import ContextDep, CurrentUser, Responses, SessionDep, removal_request_for
from server.api.params import RowIdPath
from server.api.removal_schemas import (
    ApproveBody,
    LiftedBody,
    NoteBody,
    ReasonsBody,
    RemovalRequestPublic,
    ResendBody,
    WithoutAckBody,
    request_public,
)
from server.api.routing import ValidatedRoute
from server.auth.access import Permission
from server.auth.models import User
from server.context import ServerContext
from server.core.base import utc_now
from server.core.live import Change
from server.removal.disarm import approve_request, resend_disarm
from server.removal.lifting import abort_request, confirm_lifted, lift_without_ack
from server.removal.models import RemovalRequest
from server.removal.service import reject_request, review_request
from server.removal.settler import settled_first

router = APIRouter(prefix="/removal-requests", tags=["removal"], route_class=ValidatedRoute)

RESPONSES: Responses = {
    404: {"description": "No such removal request, or not of your cases"},
    409: {"description": "The request's state does not allow it; the body names the state"},
}
SIGNING: Responses = {503: {"description": "Commands are not configured (no court signing key)"}}


@router.post("/{request_id}/review", responses=RESPONSES)
def review(
    request_id: RowIdPath, body: NoteBody, user: CurrentUser, session: SessionDep, context: ContextDep
) -> RemovalRequestPublic:
    """Take a submitted removal request up for review (judge, clerk)."""
    request = removal_request_for(session, user, request_id, Permission.REMOVAL_REVIEW, for_update=True)
    now = utc_now()
    review_request(session, actor=user, request=request, note=body.note, now=now)
    return _committed(session, context, request, user, now=now)


@router.post("/{request_id}/approve", responses=RESPONSES | SIGNING)
def approve(
    request_id: RowIdPath, body: ApproveBody, user: CurrentUser, session: SessionDep, context: ContextDep
) -> RemovalRequestPublic:
    """Approve with reasons (judge): every seal of the case is sent the signed disarm; the request waits for each
    seal's signed acknowledgement. Before the creditor's time for views ends, on a ground resting on the
    creditor's consent or act with no view on record: only with ``early_reasons`` (else 409)."""
    request = removal_request_for(session, user, request_id, Permission.REMOVAL_DECIDE, for_update=True)
    key, ttl, now = context.court_key.get(), _ttl(context), utc_now()
    early = body.early_reasons
    approve_request(session, actor=user, request=request, reasons=body.reasons, key=key, ttl=ttl, now=now, early=early)
    return _committed(session, context, request, user, now=now, commands=True)


@router.post("/{request_id}/reject", responses=RESPONSES)
def reject(
    request_id: RowIdPath, body: ReasonsBody, user: CurrentUser, session: SessionDep, context: ContextDep
) -> RemovalRequestPublic:
    """Reject with reasons (judge); the seals stay as they are."""
    request = removal_request_for(session, user, request_id, Permission.REMOVAL_DECIDE, for_update=True)
    now = utc_now()
    reject_request(session, actor=user, request=request, reasons=body.reasons, now=now)
    return _committed(session, context, request, user, now=now)


@router.post("/{request_id}/resend-disarm", responses=RESPONSES | SIGNING)
def resend(
    request_id: RowIdPath, body: ResendBody, user: CurrentUser, session: SessionDep, context: ContextDep
) -> RemovalRequestPublic:
    """Send a new signed disarm to the seals still waiting for one — offline past the last one's expiry, or that
    refused it (judge, clerk)."""
    request = removal_request_for(session, user, request_id, Permission.REMOVAL_RESEND, for_update=True)
    key, ttl, now = context.court_key.get(), _ttl(context), utc_now()
    settled_first(
        session, request, now=now, published=lambda case_no: _published(context, case_no)
    )  # every ack is in after all: kept, and the resend is a 409
    resend_disarm(
        session, actor=user, request=request, device_id=body.device_id, note=body.note, key=key, ttl=ttl, now=now
    )
    return _committed(session, context, request, user, now=now, commands=True)


@router.post("/{request_id}/lift-without-ack", responses=RESPONSES)
def without_ack(
    request_id: RowIdPath, body: WithoutAckBody, user: CurrentUser, session: SessionDep, context: ContextDep
) -> RemovalRequestPublic:
    """Decide, with reasons, that seals which never acknowledged the disarm (stolen, broken) are lifted without
    their acknowledgement (judge); the request is disarmed once every other seal has acknowledged."""
    request = removal_request_for(session, user, request_id, Permission.REMOVAL_DECIDE, for_update=True)
    now = utc_now()
    settled_first(
        session, request, now=now, published=lambda case_no: _published(context, case_no)
    )  # an ack that came a moment ago counts: kept, and a 409
    lift_without_ack(session, actor=user, request=request, device_ids=body.device_ids, reasons=body.reasons, now=now)
    return _committed(session, context, request, user, now=now)


@router.post("/{request_id}/abort", responses=RESPONSES | SIGNING)
def abort(
    request_id: RowIdPath, body: ReasonsBody, user: CurrentUser, session: SessionDep, context: ContextDep
) -> RemovalRequestPublic:
    """Withdraw the approval, with reasons (judge): the seals are sent the signed arm and the seizure stands."""
    request = removal_request_for(session, user, request_id, Permission.REMOVAL_DECIDE, for_update=True)
    key, ttl, now = context.court_key.get(), _ttl(context), utc_now()
    abort_request(session, actor=user, request=request, reasons=body.reasons, key=key, ttl=ttl, now=now)
    return _committed(session, context, request, user, now=now, commands=True)


@router.post("/{request_id}/lifted", responses=RESPONSES)
def lifted(
    request_id: RowIdPath, body: LiftedBody, user: CurrentUser, session: SessionDep, context: ContextDep
) -> RemovalRequestPublic:
    """Confirm on site that the seals are physically removed, and what was found of any lifted without their
    acknowledgement (officer): they are unbound and the seizure is lifted; events they stamp afterwards no longer
    enter the case, their notices no longer stand."""
    request = removal_request_for(session, user, request_id, Permission.REMOVAL_LIFT, for_update=True)
    now = utc_now()
    settled_first(  # the last ack may have arrived a moment ago, or a seal says it is armed again: kept, and a 409
        session, request, now=now, published=lambda case_no: _published(context, case_no)
    )
    released = confirm_lifted(session, actor=user, request=request, note=body.note, found=body.found, now=now)
    return _committed(session, context, request, user, now=now, released=released)


def _ttl(context: ServerContext) -> timedelta:
    return timedelta(seconds=context.settings.commands.ttl_s)


def _committed(
    session: Session,
    context: ServerContext,
    request: RemovalRequest,
    reader: User,
    *,
    now: datetime,
    commands: bool = False,
    released: list[str] | None = None,
) -> RemovalRequestPublic:
    """Commit the decision, wake the dispatcher if it signed commands, tell open pages (``released``: the seals a
    lifting unbound), answer the request anew."""
    session.commit()
    if commands:
        _wake_dispatcher(context)
    _published(context, request.case_no, released)
    session.expire_all()
    return request_public(session, request, now=now, reader=reader)


def _wake_dispatcher(context: ServerContext) -> None:
    if context.dispatcher is not None:
        context.dispatcher.wake()


def _published(context: ServerContext, case_no: str, released: list[str] | None = None) -> None:
    """Open pages of the case show the request's new state at once (after the commit); each seal the lifting
    ``released`` is unbound, as by hand (``binding``): its page shows it, and every open view of the court's stock."""
    context.live.publish([Change("removal", case_no=case_no), *(Change("binding", d, case_no) for d in released or [])])
