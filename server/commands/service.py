"""Commands in the database: issue (sign and store pending), apply a seal's answer, expire, list.

Every function works inside the caller's transaction; the caller commits. :func:`apply_answer` runs inside the
ingest's transaction, so a command's state changes together with the stored ``command_ack``/``command_rejected``
event or not at all. It never raises for an answer that does not fit (unknown id, another seal's command, a second
answer, one stored in another case: an answer is the case's its event is stored in): the event is stored all the
same, and the outcome says what was wrong so that it is logged and counted.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, cast

from sqlalchemy import Table, func, select, update
from sqlalchemy.orm import Session, aliased

from seal_protocol import Envelope, EventType, parse_ts
from seal_protocol.commands import (
    COMMAND_RESULTS,
    MAX_COMMAND_BYTES,
    UNVERIFIED_REASONS,
    CommandAction,
    RejectReason,
    encode_command,
    new_command,
)
from seal_protocol.errors import InvalidEnvelope
from seal_protocol.signing import SigningKey
from seal_protocol.wirejson import check_wire_value
from server.audit.service import Actor, record_audit
from server.commands.models import CourtCommand
from server.commands.refusals import refused_our_bytes
from server.commands.reused_ids import acked_other_bytes, next_command_id, reused_id, settle_reused
from server.commands.state import CommandState, states_leading_to, transition
from server.core.db import NO_KEY_UPDATE
from server.core.value_lists import one_of
from server.errors import Conflict, Invalid, NotFound
from server.seals.models import Seal

logger = logging.getLogger(__name__)

ANSWER_TYPES = (EventType.COMMAND_ACK, EventType.COMMAND_REJECTED)
MAX_COMMAND_ID = 2**53 - 1  # the protocol's bound (seal_protocol.commands.Command)
_COMMANDS = cast(Table, CourtCommand.__table__)


class AnswerOutcome(StrEnum):
    """What a ``command_ack``/``command_rejected`` event did to its command; the label of the answers counter."""

    ACKNOWLEDGED = "acknowledged"
    REJECTED = "rejected"
    UNKNOWN_COMMAND = "unknown_command"  # no such command for this seal
    ALREADY_FINAL = "already_final"  # a second answer (e.g. `replayed` after a QoS 1 redelivery): state kept
    REPLAYED = "replayed"  # `replayed` before the seal's first answer was stored (another worker has it): state kept
    ACTION_MISMATCH = "action_mismatch"  # an ack naming another action than the one issued: state kept
    RESULT_MISMATCH = "result_mismatch"  # an ack whose result is none its action has (a disarm "armed"): state kept
    UNREADABLE = "unreadable"  # the seal could not read something on its cmd topic (command_id null)
    # A refusal of bytes whose signature did not verify (malformed, unsigned, bad_signature): the id they claim is
    # nobody's word, so no command is settled by it, whatever id field the seal put in (an older seal's command_id).
    UNVERIFIED = "unverified"
    OTHER_CASE = "other_case"  # stored in another case than the command's (its seal moved): that case's alone
    FAILED = "failed"  # the court could not apply it (a defect, logged with its trace): stored, the command unchanged


#: The answers that decided their command (its state changed): whoever follows commands is told of these.
DECIDING_ANSWERS = frozenset({AnswerOutcome.ACKNOWLEDGED, AnswerOutcome.REJECTED})


def issue_command(
    session: Session,
    *,
    seal: Seal,
    action: CommandAction,
    args: dict[str, Any],
    key: SigningKey,
    ttl: timedelta,
    user: Actor,
    now: datetime,
) -> CourtCommand:
    """Store a signed ``pending`` command to ``seal`` (bound to a case, else :class:`Conflict`); ``args`` the seal
    protocol does not admit (:func:`check_wire_value`) are :class:`Invalid`, before anything is stored."""
    try:
        check_wire_value(args, what="args")
    except InvalidEnvelope as exc:
        raise Invalid(f"the command's args: {exc}") from None
    # Lock (and re-read) the seal: commands to it get their ids in the order they commit, as a seal refuses a
    # lower id than one it accepted, and an unbinding in the meantime is seen.
    session.refresh(seal, with_for_update=NO_KEY_UPDATE)
    if seal.case_no is None:
        raise Conflict(f"seal {seal.device_id!r} is bound to no case: commands go to installed seals only")
    row = CourtCommand(
        id=next_command_id(session),  # SQLite: above a seal's, once the court learnt its ids went back
        device_id=seal.device_id,
        case_no=seal.case_no,
        action=action.value,
        args=args,
        issued_by=user.id,
        issued_at=now,
        expires_at=now + ttl,
        state=CommandState.PENDING.value,
        signed=b"",
        publish_attempts=0,
        updated_at=now,
    )
    session.add(row)
    session.flush()  # the row id is the command_id that gets signed
    command = new_command(  # it names the case: a seal moved to another case meanwhile refuses it (wrong_case)
        command_id=row.id,
        device_id=seal.device_id,
        case_no=seal.case_no,
        action=action,
        key=key,
        ttl=ttl,
        args=args,
        now=now,
    )
    row.signed = encode_command(command)
    if len(row.signed) > MAX_COMMAND_BYTES:
        raise ValueError(f"the command is {len(row.signed)} bytes, a seal accepts {MAX_COMMAND_BYTES} at most")
    row.issued_at, row.expires_at = parse_ts(command.issued_at), parse_ts(command.expires_at)
    session.flush()
    return row


def issue_command_as(
    session: Session,
    *,
    actor: Actor,
    seal: Seal,
    action: CommandAction,
    args: dict[str, Any],
    key: SigningKey,
    ttl: timedelta,
    now: datetime,
) -> CourtCommand:
    """A person sends ``action`` to ``seal`` (the API and the pages alike): :func:`issue_command`, audited as
    ``command.issue``. The caller has checked that ``actor`` may (:mod:`server.auth.access`), commits, and wakes the
    dispatcher."""
    row = issue_command(session, seal=seal, action=action, args=args, key=key, ttl=ttl, user=actor, now=now)
    details = {"command_id": row.id, "action": row.action, "case_no": row.case_no, "args": row.args}
    record_audit(
        session, actor=actor, action="command.issue", target=seal.device_id, case_no=row.case_no, details=details
    )
    return row


def apply_answer(session: Session, envelope: Envelope, *, case_no: str, at: datetime) -> AnswerOutcome | None:
    """Apply a verified answer event, stored in case ``case_no``, to its command; ``None`` for events no answer."""
    if envelope.type not in ANSWER_TYPES:
        return None
    payload = envelope.payload
    reason = payload.get("reason")
    command_id = answered_command_id(envelope)
    if _unverified(envelope) and not refused_our_bytes(session, envelope, command_id):
        logger.warning(
            "seal %s refused bytes on its cmd topic that no court key signed (%s, claiming command %s, sha256 %s)",
            envelope.device_id,
            reason,
            payload.get("claimed_command_id", payload.get("command_id")),
            payload.get("sha256"),
        )
        return AnswerOutcome.UNVERIFIED
    if command_id is None:
        return AnswerOutcome.UNREADABLE
    if not 1 <= command_id <= MAX_COMMAND_ID:
        return AnswerOutcome.UNKNOWN_COMMAND
    row = session.get(CourtCommand, command_id, with_for_update=True)
    if row is None or row.device_id != envelope.device_id:
        return AnswerOutcome.UNKNOWN_COMMAND
    if row.case_no != case_no:  # said while the seal guarded another case: that case's, not this command's
        return AnswerOutcome.OTHER_CASE
    acked = envelope.type is EventType.COMMAND_ACK
    # The seal accepted another command under this id: it refuses this one `replayed` with other bytes' digest, or
    # acknowledges the other one (its ack signs those bytes' digest) — either way it never carries this one out.
    reused = acked_other_bytes(payload, row.signed) if acked else reused_id(payload, row.signed)
    acknowledged = acked and not reused
    if acknowledged and payload.get("action") != row.action:
        return AnswerOutcome.ACTION_MISMATCH
    if acknowledged and payload.get("result") not in COMMAND_RESULTS[CommandAction(row.action)]:
        return AnswerOutcome.RESULT_MISMATCH  # it proves nothing done: a disarm "armed", a ping "disarmed"
    target = CommandState.ACKNOWLEDGED if acknowledged else CommandState.REJECTED
    replayed = not acknowledged and payload.get("reason") == RejectReason.REPLAYED and not reused
    if replayed and not CommandState(row.state).is_final:  # the seal accepted this command (these bytes, or an older
        return AnswerOutcome.REPLAYED  # seal's word) already: its own answer (an earlier seq) decides
    try:
        row.state = transition(row.state, target).value
    except Conflict:
        return AnswerOutcome.ALREADY_FINAL
    row.answered_at, row.answer_seq, row.updated_at = at, envelope.seq, at
    row.result = (
        settle_reused(session, row, payload, device_id=envelope.device_id, acked=acked) if reused else dict(payload)
    )
    row.reason = (
        None if acknowledged else RejectReason.REPLAYED.value if reused else str(payload.get("reason", ""))[:32]
    )
    return AnswerOutcome.ACKNOWLEDGED if acknowledged else AnswerOutcome.REJECTED


def answered_command_id(envelope: Envelope) -> int | None:
    """The command an answer settles (and locks): its ``command_id``; for a refusal of bytes the seal could not verify
    (``command_id`` null), the ``claimed_command_id`` — settled only if the refused bytes are that command's own
    (:func:`apply_answer`)."""
    payload = envelope.payload
    command_id = payload.get("claimed_command_id") if _unverified(envelope) else payload.get("command_id")
    if _unverified(envelope) and command_id is None:
        command_id = payload.get("command_id")  # an older seal's refusal names the id it read
    return command_id if isinstance(command_id, int) and not isinstance(command_id, bool) else None


def _unverified(envelope: Envelope) -> bool:
    reason = envelope.payload.get("reason")
    return envelope.type is EventType.COMMAND_REJECTED and isinstance(reason, str) and reason in UNVERIFIED_REASONS


def due_commands(
    session: Session, *, now: datetime, due_before: datetime | None = None
) -> list[tuple[int, str, CommandAction]]:
    """The commands past their expiry (before ``due_before``, default ``now``) without an answer, as (id, device_id,
    action), by id; read without a lock."""
    sources = [state.value for state in states_leading_to(CommandState.EXPIRED)]
    due = (
        select(CourtCommand.id, CourtCommand.device_id, CourtCommand.action)
        .where(CourtCommand.state.in_(sources), CourtCommand.expires_at < (due_before or now))
        .order_by(CourtCommand.id)
    )
    return [(command_id, device_id, CommandAction(action)) for command_id, device_id, action in session.execute(due)]


def expire_due(
    session: Session, *, now: datetime, command_ids: list[int] | None = None, due_before: datetime | None = None
) -> list[tuple[int, str]]:
    """Mark every command (of ``command_ids``, if given) past its expiry (before ``due_before``, default ``now``)
    without an answer ``expired``; return their (id, device_id), by id.

    The commands are locked first, by id, as an ingest batch locks those its answers settle: an ``UPDATE`` alone
    locks them in whatever order the table or its (state, expires_at) index holds them, and would wait in a circle
    with a batch answering two of them."""
    sources = [state.value for state in states_leading_to(CommandState.EXPIRED)]
    due = (
        select(CourtCommand.id)
        .where(CourtCommand.state.in_(sources), CourtCommand.expires_at < (due_before or now))
        .order_by(CourtCommand.id)
        .with_for_update(key_share=True)
    )
    if command_ids is not None:
        if not command_ids:
            return []
        due = due.where(CourtCommand.id.in_(command_ids))
    command_ids = list(session.scalars(due))
    if not command_ids:
        return []
    statement = (
        update(_COMMANDS)
        .where(one_of(_COMMANDS.c.id, "command_ids"))
        .values(state=CommandState.EXPIRED.value, updated_at=now)
        .returning(_COMMANDS.c.id, _COMMANDS.c.device_id)
    )
    expired = session.execute(statement, {"command_ids": command_ids})
    return sorted((command_id, device_id) for command_id, device_id in expired)


def expire_unbound(
    session: Session, *, now: datetime, device_id: str | None = None, actor: Actor | None = None, note: str = ""
) -> list[tuple[int, str]]:
    """Mark ``expired`` every pending command (of ``device_id``, or of any seal) issued for a case its seal is no
    longer bound to (unbound, or moved to another case), and record each (audited ``command.expire``); return their
    (id, device_id). Such a command is not published (:func:`to_publish` holds it back even before this runs); one
    the broker took before the move may still reach the seal, which refuses it (``wrong_case``: it names its case):
    that refusal is the evidence of the seal's new case, and leaves the command ``expired`` (:func:`apply_answer`)."""
    query = (
        select(CourtCommand)
        .join(Seal, Seal.device_id == CourtCommand.device_id)
        .where(
            CourtCommand.state == CommandState.PENDING.value,
            (Seal.case_no.is_(None)) | (Seal.case_no != CourtCommand.case_no),
        )
        .order_by(CourtCommand.id)
        .with_for_update(of=CourtCommand)
    )
    if device_id is not None:
        query = query.where(CourtCommand.device_id == device_id)
    return _expire(session, list(session.scalars(query)), now=now, actor=actor, note=note or "seal unbound")


def withdraw_commands(
    session: Session, *, command_ids: list[int], now: datetime, actor: Actor | None, note: str
) -> list[tuple[int, str]]:
    """Mark those of ``command_ids`` still pending ``expired``, so that they are published no more, and record
    each (audited ``command.expire`` with ``note``); return their (id, device_id). One the broker has taken may
    still reach its seal: a command issued after it (a higher id) is what makes the seal refuse it."""
    query = (
        select(CourtCommand)
        .where(CourtCommand.id.in_(command_ids), CourtCommand.state == CommandState.PENDING.value)
        .order_by(CourtCommand.id)
        .with_for_update()
    )
    return _expire(session, list(session.scalars(query)), now=now, actor=actor, note=note)


def _expire(
    session: Session, rows: list[CourtCommand], *, now: datetime, actor: Actor | None, note: str
) -> list[tuple[int, str]]:
    for row in rows:
        row.state = transition(row.state, CommandState.EXPIRED).value
        row.updated_at = now
        details = {"command_id": row.id, "action": row.action, "case_no": row.case_no, "note": note}
        record_audit(
            session, actor=actor, action="command.expire", target=row.device_id, case_no=row.case_no, details=details
        )
    session.flush()
    return [(row.id, row.device_id) for row in rows]


def to_publish(session: Session, *, now: datetime, seals: int = 100) -> list[CourtCommand]:
    """The commands one round publishes, read without a lock: of at most ``seals`` seals, each one's pending
    commands the broker has not accepted yet, still valid and issued for the case the seal is bound to now, by id.

    The seals are those whose first such command was never tried, oldest first, then those whose first command was
    tried least recently (its ``updated_at``, set at each attempt): seals nobody receives ("no matching subscribers"
    until their commands expire) take turns, a backlog beyond ``seals`` rotating one round at a time, and a seal
    that failed many times while away waits no more than the others once it is back — at most as many rounds as
    there are seals tried before it, over ``seals``. A seal's commands stay in id order (the dispatcher holds back
    the rest of a seal's after one fails)."""
    due = (
        CourtCommand.state == CommandState.PENDING.value,
        CourtCommand.broker_accepted_at.is_(None),
        CourtCommand.expires_at > now,
        Seal.case_no == CourtCommand.case_no,
    )
    heads = (
        select(CourtCommand.device_id, func.min(CourtCommand.id).label("head"))
        .join(Seal, Seal.device_id == CourtCommand.device_id)
        .where(*due)
        .group_by(CourtCommand.device_id)
        .subquery()
    )
    first = aliased(CourtCommand)
    chosen = (
        select(heads.c.device_id)
        .join(first, first.id == heads.c.head)
        .order_by(first.publish_attempts > 0, first.updated_at, first.id)
        .limit(seals)
    )
    device_ids = list(session.scalars(chosen))
    if not device_ids:
        return []
    query = (
        select(CourtCommand)
        .join(Seal, Seal.device_id == CourtCommand.device_id)
        .where(*due, CourtCommand.device_id.in_(device_ids))
        .order_by(CourtCommand.id)
    )
    return list(session.scalars(query))


def claim_for_publish(session: Session, *, command_id: int, now: datetime) -> CourtCommand | None:
    """Lock the command (alone) and return it if it may still be published: pending, not accepted by the broker,
    unexpired, and issued for the case its seal is bound to now. Read after the lock: whatever withdrew, expired or
    settled it, or moved or unbound its seal, locks the command (an unbinding: the seal's pending commands) before
    it commits, so it has either committed and is seen here, or waits for the caller's transaction. The caller
    hands the command to the MQTT client before that transaction ends (SQLite: its write lock is held till then)."""
    query = (
        select(CourtCommand)
        .where(CourtCommand.id == command_id)
        .with_for_update(key_share=True)
        .execution_options(populate_existing=True)
    )
    row = session.scalars(query).one_or_none()
    if row is None or row.state != CommandState.PENDING.value or row.broker_accepted_at is not None:
        return None
    if row.expires_at <= now:
        return None
    bound = session.scalar(select(Seal.case_no).where(Seal.device_id == row.device_id))
    return row if bound == row.case_no else None


def list_commands(
    session: Session, *, device_id: str, case_nos: set[str] | None, limit: int, before: int | None = None
) -> list[CourtCommand]:
    """The seal's commands (only those of ``case_nos`` unless ``None``), newest first."""
    query = select(CourtCommand).where(CourtCommand.device_id == device_id)
    if case_nos is not None:
        query = query.where(CourtCommand.case_no.in_(case_nos))
    if before is not None:
        query = query.where(CourtCommand.id < before)
    return list(session.scalars(query.order_by(CourtCommand.id.desc()).limit(limit)))


def get_command(session: Session, *, command_id: int) -> CourtCommand:
    row = session.get(CourtCommand, command_id)
    if row is None:
        raise NotFound(f"unknown command {command_id}")
    return row
