"""From the judge's approval to a request ready to be lifted: the signed ``disarm`` to every seal of the case, each
seal's progress, re-sending to a seal that was offline, and settling ``disarmed`` once every seal has acknowledged
(or the judge decided to go without one that never answers, :mod:`server.removal.lifting`) — and back to
``disarm_pending`` when a seal's signed word says afterwards that it is armed again.

A seal counts as disarmed only by its signed ``command_ack`` of a disarm issued for the request — the command's
state, set by the ingest (:func:`server.commands.service.apply_answer`) in the transaction that stores the ack —
received while the seal was bound to the request's case, and not followed by a signed event saying it is armed
again. The request learns of it in :func:`settle` (run by :class:`~server.removal.settler.RemovalSettler`, woken
by the ingest after it stores an answer or an event saying a seal is armed, and before a request is shown or acted
on): the ingest's transaction holds evidence and stays free of the workflow, and the packages below this one never
import it.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import NamedTuple

from sqlalchemy import select
from sqlalchemy.orm import Session

from seal_protocol.commands import CommandAction
from seal_protocol.signing import SigningKey
from server.audit.service import Actor, record_audit
from server.commands.models import CourtCommand
from server.commands.service import issue_command
from server.core.db import SessionFactory
from server.errors import Conflict, Invalid, NotFound, Said
from server.evidence.queries import armed_in_case
from server.removal.messages import tell
from server.removal.models import RemovalDisarm, RemovalRequest
from server.removal.progress import (
    DUE,
    SETTLED,
    WANTING,
    DisarmAsOf,
    SealProgress,
    SealStatus,
    binding_test,
    progress_of,
    stood_details,
    stood_said,
)
from server.removal.record import counted_until, stored_record
from server.removal.state import RemovalAction, RemovalState, transition
from server.removal.steps import advance, get_request
from server.removal.views_window import check_early_approval
from server.removal.waivers import heard_since, waived
from server.seals.cases import get_case, set_case_status
from server.seals.models import CaseStatus, Seal, SealBinding

logger = logging.getLogger(__name__)


def approve_request(
    session: Session,
    *,
    actor: Actor,
    request: RemovalRequest,
    reasons: str,
    key: SigningKey,
    ttl: timedelta,
    now: datetime,
    early: str = "",
) -> list[CourtCommand]:
    """The judge approves, with reasons: the request becomes ``approved`` and at once ``disarm_pending``, with a
    signed ``disarm`` issued to every seal bound to the case; the case becomes ``lifting``. Before the creditor's
    time for views ends, on a ground resting on the creditor's consent or act with no view on record, only with
    ``early``: why it is decided early (:mod:`server.removal.views_window`), kept in the history and the audit."""
    if not reasons.strip():
        raise Invalid("an approval needs reasons").saying("refusal.reasons_missing")
    transition(request.state, RemovalAction.APPROVE)  # 409 before anything else is checked
    early_note, window = check_early_approval(session, request, early=early, now=now)
    # The case's row is locked before its seals are listed: a seal being bound at this moment is either bound
    # before (and disarmed) or waits, then finds the case lifting and is refused.
    get_case(session, case_no=request.case_no, for_update=True)
    seals = list(session.scalars(select(Seal).where(Seal.case_no == request.case_no).order_by(Seal.device_id)))
    if not seals:
        raise Conflict(f"no seal is bound to case {request.case_no!r}: there is nothing to disarm").saying(
            "refusal.nothing_to_disarm"
        )
    on_record = reasons + early_note
    advance(session, request, RemovalAction.APPROVE, actor=actor, now=now, note=on_record, details=window)
    request.decided_by, request.decided_at, request.decision_reasons = actor.id, now, on_record
    commands = [_disarm(session, request, seal, actor=actor, key=key, ttl=ttl, now=now) for seal in seals]
    said = Said("removal_note.issue_disarm", {"n": len(seals)})
    sent = {"commands": {row.device_id: row.id for row in commands}}
    advance(session, request, RemovalAction.ISSUE_DISARM, actor=actor, now=now, said=said, details=sent)
    status_note = f"removal request {request.id} approved"
    set_case_status(session, actor=actor, case_no=request.case_no, status=CaseStatus.LIFTING, note=status_note)
    tell(session, request, "approved", now=now, extra=on_record)
    return commands


def resend_disarm(
    session: Session,
    *,
    actor: Actor,
    request: RemovalRequest,
    device_id: str | None,
    note: str,
    key: SigningKey,
    ttl: timedelta,
    now: datetime,
) -> list[CourtCommand]:
    """A new signed ``disarm`` to each seal of the request that is waiting (its disarm expired unanswered), refused
    it or says it is armed again — and to a seal bound to the case that was sent none — or to ``device_id`` only.
    :class:`Conflict` if no such seal needs one. A ``disarmed`` request (locked) whose seal said since it was settled
    that it is not disarmed goes back first as the server's :func:`armed_again`, everyone told: the re-send does not
    take it back unannounced (the officers told to go on site, the debtor that an officer will come)."""
    transition(request.state, RemovalAction.RESEND_DISARM)
    if request.state == RemovalState.DISARMED:
        armed_again(session, request, now=now)
    progress = {p.device_id: p for p in seal_progress(session, request, now=now)}
    unsent = unsent_seals(session, request, progress)
    if device_id is not None and device_id not in progress and device_id not in unsent:
        raise NotFound(f"seal {device_id!r} is not one of removal request {request.id}")
    due = [d for d, p in progress.items() if p.status in DUE] + unsent
    due = [d for d in due if device_id in (None, d)]
    if not due:
        shown = ", ".join(f"{p.device_id}: {p.status.value}" for p in progress.values())
        said = [_said(p.device_id, p.status) for p in progress.values()]
        raise Conflict(f"no seal of removal request {request.id} waits for a new disarm ({shown})").saying(
            "refusal.nothing_to_resend", seals=said
        )
    seals = session.scalars(select(Seal).where(Seal.device_id.in_(due)).order_by(Seal.device_id))
    commands = [_disarm(session, request, seal, actor=actor, key=key, ttl=ttl, now=now) for seal in seals]
    sent = {"commands": {row.device_id: row.id for row in commands}}
    advance(session, request, RemovalAction.RESEND_DISARM, actor=actor, now=now, note=note, details=sent)
    return commands


def _disarm(
    session: Session,
    request: RemovalRequest,
    seal: Seal,
    *,
    actor: Actor,
    key: SigningKey,
    ttl: timedelta,
    now: datetime,
) -> CourtCommand:
    if seal.case_no != request.case_no:
        raise Conflict(f"seal {seal.device_id!r} is no longer bound to case {request.case_no!r}").saying(
            "refusal.seal_moved", device=seal.device_id
        )
    row = issue_command(session, seal=seal, action=CommandAction.DISARM, args={}, key=key, ttl=ttl, user=actor, now=now)
    session.add(RemovalDisarm(request_id=request.id, command_id=row.id, device_id=seal.device_id))
    details = {"command_id": row.id, "action": row.action, "case_no": row.case_no, "removal_request": request.id}
    record_audit(
        session, actor=actor, action="command.issue", target=seal.device_id, case_no=row.case_no, details=details
    )
    return row


def seal_progress(session: Session, request: RemovalRequest, *, now: datetime) -> list[SealProgress]:
    """Each seal the request sent a disarm to, by device id: disarmed once any of its disarms is acknowledged while
    it was bound to the request's case, and no signed event of it in that case, while bound to it, said armed since.

    Only the seal's events and answers in the request's case count — never what it says once bound to another —
    and a final request is shown as it stood when it became final: the record its final step stored
    (:mod:`server.removal.record`), or, made final before records were stored, as of that step (:func:`as_of`)."""
    until = as_of(request)
    if until is not None:
        stored = stored_record(session, request)
        if stored is not None:
            return stored
    query = (
        select(CourtCommand)
        .join(RemovalDisarm, RemovalDisarm.command_id == CourtCommand.id)
        .where(RemovalDisarm.request_id == request.id)
        .order_by(CourtCommand.id)
    )
    by_seal: dict[str, list[DisarmAsOf]] = {}
    for command in session.scalars(query):
        by_seal.setdefault(command.device_id, []).append(DisarmAsOf.of(command, until))
    spans: dict[str, list[SealBinding]] = {device_id: [] for device_id in by_seal}
    for binding in session.scalars(select(SealBinding).where(SealBinding.device_id.in_(by_seal))):
        spans[binding.device_id].append(binding)
    waivers = waived(session, request)
    progress = []
    for device_id, commands in sorted(by_seal.items()):
        bindings = spans[device_id]
        windows = (
            None if not bindings else [(b.bound_at, b.unbound_at) for b in bindings if b.case_no == request.case_no]
        )
        said = armed_in_case(session, device_id=device_id, case_no=request.case_no, spans=windows, until=until)
        bound = binding_test(bindings, request.case_no)
        waiver = waivers.get(device_id)
        if waiver is not None and heard_since(
            session,
            waiver,
            case_no=request.case_no,
            issued_at=commands[-1].issued_at,
            answered_at=commands[-1].answered_at,
            windows=windows,
            until=until,
        ):
            waiver = None  # the seal's own word since the decision takes precedence over it
        progress.append(progress_of(device_id, commands, now if until is None else until, said, bound, waiver))
    return progress


def as_of(request: RemovalRequest) -> datetime | None:
    """The moment ``request`` is shown as of, unless its final step stored its record: the moment it became final
    (its last step) once it is — a seal that
    answers, or is armed again (an ``arm`` after an abort, or in another case), afterwards no longer belongs to its
    record; ``None`` while it is open: everything stored counts. Never the reader's clock: an answer committed after
    the reader took the time and before it read (its ``answered_at`` later than that time) would be shown as never
    come, beside the ``disarmed`` state it brought, with no later change to mend the page."""
    return request.updated_at if RemovalState(request.state).is_final else None


def unsent_seals(session: Session, request: RemovalRequest, progress: dict[str, SealProgress]) -> list[str]:
    """Seals bound to the request's case now that were sent no disarm for it (none should be: the approval locks
    the case; :func:`resend_disarm` sends them one)."""
    bound = session.scalars(select(Seal.device_id).where(Seal.case_no == request.case_no).order_by(Seal.device_id))
    return [device_id for device_id in bound if device_id not in progress]


class Unsettled(NamedTuple):
    """What keeps a request from being disarmed: for the API (``text``) and in the court's words (``said``)."""

    text: str
    said: Said


def _said(device_id: str, status: SealStatus) -> Said:
    return Said("refusal.seal_is", {"device": device_id, "status": Said(f"case_seal_progress.{status.value}")})


def unsettled(
    session: Session, request: RemovalRequest, *, now: datetime, progress: list[SealProgress] | None = None
) -> list[Unsettled]:
    """What keeps the request from being disarmed, seal by seal: each not disarmed (nor lifted without its
    acknowledgement by the judge's decision), and each bound to the case that was sent no disarm. Empty: ready."""
    if progress is None:
        progress = seal_progress(session, request, now=now)
    if not progress:
        return [Unsettled("no disarm was sent", Said("refusal.no_disarm_sent"))]
    problems = [
        Unsettled(f"seal {p.device_id}: {WANTING[p.status]}", _said(p.device_id, p.status))
        for p in progress
        if p.status not in SETTLED
    ]
    for d in unsent_seals(session, request, {p.device_id: p for p in progress}):
        text = f"seal {d} is bound to the case and was sent no disarm: re-send the disarm"
        problems.append(Unsettled(text, Said("refusal.seal_unsent", {"device": d})))
    return problems


def all_disarmed(session: Session, request: RemovalRequest, *, now: datetime) -> bool:
    """Has each seal of ``request`` acknowledged a disarm (or been decided without), and is every seal bound to
    the case one of them?"""
    return not unsettled(session, request, now=now)


def settle(session: Session, *, request_id: int, now: datetime) -> bool:
    """Move the request as its seals' signed word says, and return whether it moved: ``disarm_pending`` →
    ``disarmed`` if each seal of the request has acknowledged a disarm (or the judge decided to lift it without)
    and no other seal is bound to the case; ``disarmed`` → ``disarm_pending`` (:func:`armed_again`) if that no
    longer holds. Done by the server itself (no actor); safe to run any number of times, from several places at
    once."""
    request = get_request(session, request_id=request_id, for_update=True)
    if request.state == RemovalState.DISARMED:
        return armed_again(session, request, now=now)
    if request.state != RemovalState.DISARM_PENDING:
        return False
    progress = seal_progress(session, request, now=now)
    if unsettled(session, request, now=now, progress=progress):
        return False
    # not dated before the last ack it counts, nor before a step taken while the settler waited for the lock
    now = max(counted_until(now, progress), request.updated_at)
    acks = {p.device_id: p.command_id for p in progress if p.status is SealStatus.DISARMED}
    waived_seals = [p for p in progress if p.status is SealStatus.WITHOUT_ACK]
    without = [p.device_id for p in waived_seals]
    said = Said("removal_note.all_acknowledged")
    if without:
        acked = list(acks) or Said("removal_note.no_seal")
        said = Said("removal_note.some_without", {"acks": acked, "stood": [stood_said(p) for p in waived_seals]})
    as_they_stood = {p.device_id: stood_details(p) for p in waived_seals}
    details = {"acks": acks, "without_ack": without, "without_ack_as": as_they_stood}
    advance(session, request, RemovalAction.CONFIRM_DISARMED, actor=None, now=now, said=said, details=details)
    request.disarmed_at = now
    if without:
        tell(session, request, "disarmed_without_ack", now=now, extra=", ".join(without))
    else:
        tell(session, request, "disarmed", now=now)
    tell(session, request, "disarmed_for_debtor", now=now)  # the same words either way: no seal, no state
    return True


def armed_again(session: Session, request: RemovalRequest, *, now: datetime) -> bool:
    """A ``disarmed`` request (locked) whose seals no longer all stand settled — a seal's signed event since its ack
    says it is armed again (``rearmed``), or a seal lifted without its ack has been heard from since — goes back to
    ``disarm_pending`` (the server's ``armed_again``: recorded, the judge and the officers told, so that no one goes
    on site to remove a seal that guards the door again, and the debtor, told before that an officer will come, in
    words that name no seal); return whether it moved."""
    progress = seal_progress(session, request, now=now)
    # Only a seal's own signed word moves it back (a seal bound to the case since, sent no disarm, is refused by the
    # request's hold on the case; the officer's confirmation would name it all the same).
    moved = [p for p in progress if p.status not in SETTLED]
    if not moved:
        return False
    now = max(now, request.updated_at)
    named = [p.device_id for p in moved]
    said = Said("removal_note.armed_again", {"stood": [stood_said(p) for p in moved]})
    details = {"armed_again": {p.device_id: stood_details(p) for p in moved}}
    advance(session, request, RemovalAction.ARMED_AGAIN, actor=None, now=now, said=said, details=details)
    request.disarmed_at = None  # disarmed no longer: dated anew when every seal has acknowledged again
    tell(session, request, "armed_again", now=now, extra=", ".join(named))
    tell(session, request, "armed_again_for_debtor", now=now)  # told an officer will come: no longer; no seal named
    logger.warning("removal request %d: seal(s) %s no longer disarmed: back to disarm_pending", request.id, named)
    return True


def settle_on_read(
    session_factory: SessionFactory, reading: Session, request: RemovalRequest, *, now: datetime
) -> bool:
    """Before ``request`` (read on ``reading``) is shown: :func:`settle` it in a transaction of its own if every seal
    has acknowledged; return whether it moved (then ``reading`` is rolled back, and a new read sees the new state).
    The API's ``GET /api/removal-requests/{id}`` and the pages show a request the same way. Likewise a ``disarmed``
    request whose seals no longer all stand settled goes back to ``disarm_pending`` first (:func:`armed_again`)."""
    if request.state not in (RemovalState.DISARM_PENDING, RemovalState.DISARMED):
        return False
    if all_disarmed(reading, request, now=now) != (request.state == RemovalState.DISARM_PENDING):
        return False
    with session_factory() as writing:
        settled = settle(writing, request_id=request.id, now=now)
        writing.commit()
    if settled:
        reading.rollback()
    return settled


def waiting_request_ids(session: Session) -> list[int]:
    """The requests waiting for their seals' acknowledgements, and those ``disarmed`` (a seal's signed word may
    have said since that it is armed again: :func:`armed_again`)."""
    states = [RemovalState.DISARM_PENDING.value, RemovalState.DISARMED.value]
    query = select(RemovalRequest.id).where(RemovalRequest.state.in_(states))
    return list(session.scalars(query.order_by(RemovalRequest.id)))
