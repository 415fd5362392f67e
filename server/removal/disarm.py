"""From the judge's approval to the lifted seizure: the signed ``disarm`` to every seal of the case, each seal's
progress, re-sending to a seal that was offline, settling ``disarmed`` once every seal has acknowledged, and the
officer's confirmation on site (the seals unbound).

A seal counts as disarmed only by its signed ``command_ack`` of a disarm issued for the request — the command's
state, set by the ingest (:func:`server.commands.service.apply_answer`) in the transaction that stores the ack.
The request learns of it in :func:`settle` (run by :class:`~server.removal.settler.RemovalSettler`, woken by the
ingest after it stores an answer, and before a request is shown or acted on): the ingest's transaction holds
evidence and stays free of the workflow, and the packages below this one never import it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy import select
from sqlalchemy.orm import Session

from seal_protocol.commands import CommandAction
from seal_protocol.signing import SigningKey
from server.audit.service import Actor, record_audit
from server.commands.models import CourtCommand
from server.commands.service import issue_command
from server.commands.state import CommandState
from server.core.db import SessionFactory
from server.errors import Conflict, Invalid, NotFound
from server.removal.messages import tell
from server.removal.models import RemovalDisarm, RemovalRequest
from server.removal.state import RemovalAction, RemovalState, transition
from server.removal.steps import advance, get_request
from server.seals.cases import set_case_status
from server.seals.models import CaseStatus, Seal
from server.seals.registry import unbind_seal


class SealStatus(StrEnum):
    """Where one seal of an approved request stands."""

    SENT = "sent"  # the disarm is valid and the seal has not answered yet
    WAITING_FOR_SEAL = "waiting_for_seal"  # the disarm expired unanswered (the seal is offline): re-send it
    REFUSED = "refused"  # the seal refused the disarm (e.g. expired by its clock): re-send it
    DISARMED = "disarmed"  # its signed command_ack arrived


@dataclass(frozen=True)
class SealProgress:
    device_id: str
    status: SealStatus
    command_id: int  # the acknowledged disarm, else the latest one
    command_state: str
    issued_at: datetime
    expires_at: datetime
    answered_at: datetime | None
    reason: str | None
    commands: int  # how many disarms were issued to it for the request
    armed: bool | None  # as the seal's latest signed event says (None: it has not said)


def approve_request(
    session: Session,
    *,
    actor: Actor,
    request: RemovalRequest,
    reasons: str,
    key: SigningKey,
    ttl: timedelta,
    now: datetime,
) -> list[CourtCommand]:
    """The judge approves, with reasons: the request becomes ``approved`` and at once ``disarm_pending``, with a
    signed ``disarm`` issued to every seal bound to the case; the case becomes ``lifting``."""
    if not reasons.strip():
        raise Invalid("an approval needs reasons")
    transition(request.state, RemovalAction.APPROVE)  # 409 before anything else is checked
    seals = list(session.scalars(select(Seal).where(Seal.case_no == request.case_no).order_by(Seal.device_id)))
    if not seals:
        raise Conflict(f"no seal is bound to case {request.case_no!r}: there is nothing to disarm")
    advance(session, request, RemovalAction.APPROVE, actor=actor, now=now, note=reasons)
    request.decided_by, request.decided_at, request.decision_reasons = actor.id, now, reasons
    commands = [_disarm(session, request, seal, actor=actor, key=key, ttl=ttl, now=now) for seal in seals]
    note = f"disarm sent to {len(seals)} seal(s)"
    sent = {"commands": {row.device_id: row.id for row in commands}}
    advance(session, request, RemovalAction.ISSUE_DISARM, actor=actor, now=now, note=note, details=sent)
    status_note = f"removal request {request.id} approved"
    set_case_status(session, actor=actor, case_no=request.case_no, status=CaseStatus.LIFTING, note=status_note)
    tell(session, request, "approved", now=now, extra=reasons)
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
    """A new signed ``disarm`` to each seal of the request that is waiting (its disarm expired unanswered) or
    refused it — or to ``device_id`` only. :class:`Conflict` if no such seal needs one."""
    transition(request.state, RemovalAction.RESEND_DISARM)
    progress = {p.device_id: p for p in seal_progress(session, request, now=now)}
    if device_id is not None and device_id not in progress:
        raise NotFound(f"seal {device_id!r} is not one of removal request {request.id}")
    again = (SealStatus.WAITING_FOR_SEAL, SealStatus.REFUSED)
    due = [p for p in progress.values() if p.status in again and device_id in (None, p.device_id)]
    if not due:
        shown = ", ".join(f"{p.device_id}: {p.status.value}" for p in progress.values())
        raise Conflict(f"no seal of removal request {request.id} waits for a new disarm ({shown})")
    seals = session.scalars(select(Seal).where(Seal.device_id.in_([p.device_id for p in due])).order_by(Seal.device_id))
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
        raise Conflict(f"seal {seal.device_id!r} is no longer bound to case {request.case_no!r}")
    row = issue_command(session, seal=seal, action=CommandAction.DISARM, args={}, key=key, ttl=ttl, user=actor, now=now)
    session.add(RemovalDisarm(request_id=request.id, command_id=row.id, device_id=seal.device_id))
    details = {"command_id": row.id, "action": row.action, "case_no": row.case_no, "removal_request": request.id}
    record_audit(session, actor=actor, action="command.issue", target=seal.device_id, details=details)
    return row


def seal_progress(session: Session, request: RemovalRequest, *, now: datetime) -> list[SealProgress]:
    """Each seal the request sent a disarm to, by device id: disarmed once any of its disarms is acknowledged."""
    query = (
        select(CourtCommand)
        .join(RemovalDisarm, RemovalDisarm.command_id == CourtCommand.id)
        .where(RemovalDisarm.request_id == request.id)
        .order_by(CourtCommand.id)
    )
    by_seal: dict[str, list[CourtCommand]] = {}
    for command in session.scalars(query):
        by_seal.setdefault(command.device_id, []).append(command)
    armed: dict[str, bool | None] = {}
    for device_id, value in session.execute(select(Seal.device_id, Seal.armed).where(Seal.device_id.in_(by_seal))):
        armed[device_id] = value
    return [_progress(d, commands, now, armed.get(d)) for d, commands in sorted(by_seal.items())]


def _progress(device_id: str, commands: Sequence[CourtCommand], now: datetime, armed: bool | None) -> SealProgress:
    acknowledged = [c for c in commands if c.state == CommandState.ACKNOWLEDGED]
    command = acknowledged[0] if acknowledged else commands[-1]
    if acknowledged:
        status = SealStatus.DISARMED
    elif command.state == CommandState.REJECTED:
        status = SealStatus.REFUSED
    elif command.state == CommandState.PENDING and command.expires_at > now:
        status = SealStatus.SENT
    else:  # expired, or pending past its expiry (the dispatcher has not marked it yet)
        status = SealStatus.WAITING_FOR_SEAL
    return SealProgress(
        device_id=device_id,
        status=status,
        command_id=command.id,
        command_state=command.state,
        issued_at=command.issued_at,
        expires_at=command.expires_at,
        answered_at=command.answered_at,
        reason=command.reason,
        commands=len(commands),
        armed=armed,
    )


def all_disarmed(session: Session, request: RemovalRequest, *, now: datetime) -> bool:
    """Has each seal of ``request`` acknowledged a disarm (and was there any)?"""
    progress = seal_progress(session, request, now=now)
    return bool(progress) and all(p.status is SealStatus.DISARMED for p in progress)


def settle(session: Session, *, request_id: int, now: datetime) -> bool:
    """``disarm_pending`` → ``disarmed`` if each seal of the request has acknowledged a disarm; return whether it
    moved. Done by the server itself (no actor); safe to run any number of times, from several places at once."""
    request = get_request(session, request_id=request_id, for_update=True)
    if request.state != RemovalState.DISARM_PENDING:
        return False
    if not all_disarmed(session, request, now=now):
        return False
    acks = {p.device_id: p.command_id for p in seal_progress(session, request, now=now)}
    note = "each seal acknowledged the disarm with its signed command_ack"
    advance(session, request, RemovalAction.CONFIRM_DISARMED, actor=None, now=now, note=note, details={"acks": acks})
    request.disarmed_at = now
    tell(session, request, "disarmed", now=now)
    return True


def settle_on_read(
    session_factory: SessionFactory, reading: Session, request: RemovalRequest, *, now: datetime
) -> bool:
    """Before ``request`` (read on ``reading``) is shown: :func:`settle` it in a transaction of its own if every seal
    has acknowledged; return whether it moved (then ``reading`` is rolled back, and a new read sees the new state).
    The API's ``GET /api/removal-requests/{id}`` and the pages show a request the same way."""
    if request.state != RemovalState.DISARM_PENDING or not all_disarmed(reading, request, now=now):
        return False
    with session_factory() as writing:
        settled = settle(writing, request_id=request.id, now=now)
        writing.commit()
    if settled:
        reading.rollback()
    return settled


def waiting_request_ids(session: Session) -> list[int]:
    """The requests waiting for their seals' acknowledgements."""
    query = select(RemovalRequest.id).where(RemovalRequest.state == RemovalState.DISARM_PENDING.value)
    return list(session.scalars(query.order_by(RemovalRequest.id)))


def confirm_lifted(session: Session, *, actor: Actor, request: RemovalRequest, note: str, now: datetime) -> list[str]:
    """An officer on site confirms the seals are physically removed: every seal of the case is unbound (events it
    stamps after that, beyond the clock-skew allowance, no longer enter the case), the request and the case are
    ``lifted``. Return the unbound seals' ids."""
    transition(request.state, RemovalAction.LIFT)  # disarmed first: 409 otherwise
    seals = list(session.scalars(select(Seal).where(Seal.case_no == request.case_no).order_by(Seal.device_id)))
    for seal in seals:
        unbind_seal(session, actor=actor, device_id=seal.device_id)
    unbound = [seal.device_id for seal in seals]
    advance(session, request, RemovalAction.LIFT, actor=actor, now=now, note=note, details={"unbound": unbound})
    request.lifted_by, request.lifted_at = actor.id, now
    status_note = f"removal request {request.id}: the seals were removed on site"
    set_case_status(session, actor=actor, case_no=request.case_no, status=CaseStatus.LIFTED, note=status_note)
    tell(session, request, "lifted", now=now)
    return unbound
