"""The end of an approved request: the officer's confirmation on site (the seals unbound, the seizure ``lifted``),
and the judge's two decisions for a request stuck waiting for a seal that never answers (stolen, broken, its
battery dead) — lift it without its acknowledgement, or withdraw the approval (the seals armed again, the case
``sealed``). Each moves the request through :func:`~server.removal.steps.advance` and tells the people of the case;
the caller commits.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy import select
from sqlalchemy.orm import Session

from seal_protocol.commands import CommandAction
from seal_protocol.signing import SigningKey
from server.audit.service import Actor, record_audit
from server.commands.models import CourtCommand
from server.commands.service import issue_command, withdraw_commands
from server.errors import Conflict, Invalid, NotFound, Said
from server.notices.service import Revocation
from server.removal.disarm import seal_progress, settle, unsettled
from server.removal.errors import IllegalTransition
from server.removal.messages import tell
from server.removal.models import RemovalDisarm, RemovalRequest, RemovalWaiver
from server.removal.progress import WAIVABLE, SealStatus, stood_details
from server.removal.record import counted_until, record_of, withdrawn_in
from server.removal.release import release_seal
from server.removal.state import RemovalAction, RemovalState, transition
from server.removal.steps import advance, hold_of
from server.removal.waivers import waived
from server.seals.cases import get_case, set_case_status
from server.seals.models import CaseStatus, Seal


class SealFound(StrEnum):
    """What the officer found on site of a seal lifted without its acknowledgement."""

    REMOVED = "removed"  # there, and taken off
    DESTROYED = "destroyed"
    MISSING = "missing"


def lift_without_ack(
    session: Session,
    *,
    actor: Actor,
    request: RemovalRequest,
    device_ids: Sequence[str],
    reasons: str,
    now: datetime,
) -> None:
    """The judge decides, with reasons, that the seals ``device_ids`` — each of which does not answer: its disarm
    expired unanswered (``waiting_for_seal``), or it refused it (``refused``) — are lifted without their
    acknowledgement (what the decision covers: :mod:`server.removal.waivers`). The request stays
    ``disarm_pending`` until every other seal has
    acknowledged (at once ``disarmed`` if they all have); the officer's confirmation then says what was found of
    them. :class:`NotFound` for a seal the request did not send a disarm to, :class:`Conflict` for one that has
    acknowledged or was decided already, or whose disarm is still valid (``sent``) or that said it is armed again
    (``rearmed``)."""
    if not reasons.strip():
        raise Invalid("a decision to lift without a seal's acknowledgement needs reasons").saying(
            "refusal.reasons_missing"
        )
    transition(request.state, RemovalAction.LIFT_WITHOUT_ACK)
    progress = {p.device_id: p for p in seal_progress(session, request, now=now)}
    named = list(dict.fromkeys(device_ids))
    for device_id in named:
        seal = progress.get(device_id)
        if seal is None:
            raise NotFound(f"seal {device_id!r} is not one of removal request {request.id}")
        if seal.status in (SealStatus.DISARMED, SealStatus.WITHOUT_ACK):
            raise Conflict(f"seal {device_id!r} of removal request {request.id} is {seal.status.value} already").saying(
                "refusal.seal_decided", device=device_id, status=Said(f"case_seal_progress.{seal.status.value}")
            )
        if seal.status not in WAIVABLE:
            raise Conflict(
                f"封条 {device_id} 当前为“{seal.status.value}”：只有解除布防指令过期未应答（waiting_for_seal）"
                f"或拒绝了指令（refused）的封条，才可由法官决定不待其确认解除。 / "
                f"seal {device_id!r} of removal request {request.id} is {seal.status.value}: "
                "only a seal whose disarm expired unanswered (waiting_for_seal) "
                "or that refused it (refused) may be lifted without its acknowledgement"
            ).saying(
                "refusal.seal_not_waivable", device=device_id, status=Said(f"case_seal_progress.{seal.status.value}")
            )
    earlier = waived(session, request)  # a decision the seal's own word has overtaken since: decided again
    for device_id in named:
        waiver = earlier.get(device_id)
        if waiver is None:
            waiver = RemovalWaiver(request_id=request.id, device_id=device_id)
            session.add(waiver)
        waiver.decided_by, waiver.decided_at, waiver.reasons, waiver.found = actor.id, now, reasons, None
    session.flush()
    details = {"without_ack": named, "as_they_stood": {d: stood_details(progress[d]) for d in named}}
    advance(session, request, RemovalAction.LIFT_WITHOUT_ACK, actor=actor, now=now, note=reasons, details=details)
    tell(session, request, "without_ack", now=now, extra=", ".join(named))
    settle(session, request_id=request.id, now=now)  # every other seal may have acknowledged already


def confirm_lifted(
    session: Session,
    *,
    actor: Actor,
    request: RemovalRequest,
    note: str,
    now: datetime,
    found: Mapping[str, SealFound] | None = None,
) -> list[str]:
    """An officer on site confirms the seals are physically removed — and, of each seal lifted without its
    acknowledgement, whether it was found (and removed), destroyed or missing: every seal of the case is unbound
    (events it stamps after that, beyond the clock-skew allowance, no longer enter the case; its pending commands
    expire, its notices are revoked), the request and the case are ``lifted``. Return the unbound seals' ids.

    :class:`Conflict` unless every seal bound to the case acknowledged the disarm (and says it is disarmed still)
    or was decided without, and each seal that never acknowledged is named in ``found`` (and none that was not
    decided without)."""
    waiting = request.state == RemovalState.DISARM_PENDING  # a 409 that names the seals it waits for
    if not waiting:
        transition(request.state, RemovalAction.LIFT)  # disarmed first: 409 otherwise
    get_case(session, case_no=request.case_no, for_update=True)
    progress = seal_progress(session, request, now=now)
    problems = unsettled(session, request, now=now, progress=progress)
    if problems or waiting:
        text = "; ".join(p.text for p in problems) or "it waits for the server to settle it"
        message = f"removal request {request.id} is {request.state}: it cannot be lifted now: {text}"
        said = [p.said for p in problems]
        if waiting:
            raise IllegalTransition(request.state, RemovalAction.LIFT.value, message).saying(
                "refusal.not_disarmed", seals=said
            )
        raise Conflict(message).saying("refusal.not_disarmed", seals=said)
    waivers = waived(session, request)
    found = dict(found or {})
    never = {p.device_id for p in progress if p.status is SealStatus.WITHOUT_ACK}
    # against the seals lifted without their acknowledgement now: a waived seal whose signed acknowledgement came
    # after the decision needs no word from the officer, and none is recorded for it
    unnamed, other = sorted(never - set(found)), sorted(set(found) - never)
    if unnamed:
        raise Conflict(
            f"seal(s) {', '.join(unnamed)} were lifted without their acknowledgement: say whether each was found "
            "(and removed), destroyed or missing"
        ).saying("refusal.found_missing", devices=", ".join(unnamed))
    if other:
        raise Conflict(
            f"seal(s) {', '.join(other)} were not lifted without their acknowledgement: nothing to say"
        ).saying("refusal.found_not_asked", devices=", ".join(other))
    for device_id, waiver in waivers.items():
        if device_id in never:
            waiver.found = SealFound(found[device_id]).value
    # The record is what this decision read, and the lifting is dated no earlier than the last answer it counts.
    record = [replace(p, found=SealFound(found[p.device_id]).value) if p.device_id in never else p for p in progress]
    now = counted_until(now, progress)
    # All the seals before any of their commands (each release locks its seal's pending commands): the ingest locks
    # the rows of a batch's seals at once, then the commands their answers settle (server.ingest.rows).
    query = select(Seal).where(Seal.case_no == request.case_no).order_by(Seal.device_id)
    seals = list(session.scalars(query.with_for_update(key_share=True)))
    why = f"removal request {request.id}: the seizure was lifted, the seals removed on site"
    for seal in seals:
        release_seal(
            session,
            actor=actor,
            device_id=seal.device_id,
            now=now,
            reason=Revocation.LIFTED,
            note=why,
            through=hold_of(request),
        )
    unbound = [seal.device_id for seal in seals]
    details = {"unbound": unbound, "found": {d: SealFound(f).value for d, f in found.items()}}
    final = record_of(record)
    advance(session, request, RemovalAction.LIFT, actor=actor, now=now, note=note, details=details, seals=final)
    request.lifted_by, request.lifted_at = actor.id, now
    status_note = f"removal request {request.id}: the seals were removed on site"
    set_case_status(session, actor=actor, case_no=request.case_no, status=CaseStatus.LIFTED, note=status_note)
    tell(session, request, "lifted", now=now)
    return unbound


def abort_request(
    session: Session,
    *,
    actor: Actor,
    request: RemovalRequest,
    reasons: str,
    key: SigningKey,
    ttl: timedelta,
    now: datetime,
) -> list[CourtCommand]:
    """The judge withdraws the approval, with reasons: the request's disarms not yet answered are withdrawn (not
    published any more), every seal of the request still bound to the case is sent a signed ``arm`` — issued after
    the disarms, so a seal that gets both ends armed — and the case is ``sealed`` again. Return the arm commands."""
    if not reasons.strip():
        raise Invalid("withdrawing an approval needs reasons").saying("refusal.reasons_missing")
    transition(request.state, RemovalAction.ABORT)
    get_case(session, case_no=request.case_no, for_update=True)
    disarms = list(session.scalars(select(RemovalDisarm).where(RemovalDisarm.request_id == request.id)))
    why = f"removal request {request.id}: the approval was withdrawn"
    devices = sorted({d.device_id for d in disarms})
    # The seals before their commands (the lock order of server.ingest.rows): the ingest of a seal's answer to its
    # disarm holds the seal's row when it locks the command.
    query = select(Seal).where(Seal.device_id.in_(devices), Seal.case_no == request.case_no).order_by(Seal.device_id)
    seals = list(session.scalars(query.with_for_update(key_share=True)))
    withdrawn = withdraw_commands(session, command_ids=[d.command_id for d in disarms], now=now, actor=actor, note=why)
    # The record: the seals as they stand once the unanswered disarms are withdrawn; an answer committed later is
    # not part of it. The abort is dated no earlier than the last answer it counts.
    progress = seal_progress(session, request, now=now)
    now = counted_until(now, progress)
    progress = withdrawn_in(progress, [command_id for command_id, _ in withdrawn], now)
    arms = []
    for seal in seals:
        row = issue_command(
            session, seal=seal, action=CommandAction.ARM, args={}, key=key, ttl=ttl, user=actor, now=now
        )
        details = {"command_id": row.id, "action": row.action, "case_no": row.case_no, "removal_request": request.id}
        record_audit(
            session, actor=actor, action="command.issue", target=seal.device_id, case_no=row.case_no, details=details
        )
        arms.append(row)
    details = {"withdrawn": [command_id for command_id, _ in withdrawn], "arm": {r.device_id: r.id for r in arms}}
    final = record_of(progress)
    advance(session, request, RemovalAction.ABORT, actor=actor, now=now, note=reasons, details=details, seals=final)
    set_case_status(session, actor=actor, case_no=request.case_no, status=CaseStatus.SEALED, note=why)
    tell(session, request, "aborted", now=now, extra=reasons)
    return arms
