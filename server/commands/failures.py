"""Alarms for an ``arm`` or a ``disarm`` the seal did not carry out: it expired unanswered, or the seal refused it.

A seal that does not arm when the judge withdraws an approval stays disarmed on a sealed site; a disarm not carried
out holds up a lifting. Either needs a person, and until now only the command's row (and the removal request's page,
for a disarm) said so. The alarm (``arm_failed``, ``disarm_failed``) is a condition of the seal in the command's
case — one live alarm per seal, later failures folded into it — raised in the transaction that settles the command:
the dispatcher's expiry of a command past its expiry unanswered (:func:`~server.commands.service.expire_due`), the
ingest's applying of the seal's signed ``command_rejected``. A command followed by a later ``arm`` or ``disarm`` to
its seal (a withdrawn approval's disarms are followed by its arm), or whose seal left its case, raises none: what
the court wants of the seal now is the later command. Nor does one whose purpose the seal's signed answers already
fulfil: it acknowledged an earlier command of the same action, with no command of the other action issued between
(:func:`fulfilled_by`: a disarm re-sent after the first one expired, whose late ack then arrives). The system closes
the alarm when the seal acknowledges that command (late), a later arm or disarm, or an earlier one that fulfils it
so (:func:`close_failed`, in the ingest): what the court wants of it now is done. The command dispatcher's rounds
close what that missed (:func:`close_settled`): an ack applied beside the expiry that raised the alarm, by a
transaction that had read the seal's alarms before that expiry committed (two alarms for one command, then, of a
refusal); and the alarm of a seal no longer bound to its case (a lifting).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, func, select
from sqlalchemy.orm import Session, aliased

from seal_protocol.commands import CommandAction
from server.alarms.book import AlarmBook
from server.alarms.models import Alarm
from server.alarms.state import LIVE_STATES, AlarmKind, AlarmState, transition
from server.commands.models import CourtCommand
from server.commands.refusals import refused_own_bytes, signed_sha256
from server.commands.service import MAX_COMMAND_ID, AnswerOutcome, due_commands, expire_due
from server.commands.state import CommandState
from server.notify.outbox import notifying
from server.seals.models import Seal

#: The alarm of each action whose failure needs a person.
FAILURE_ALARMS = {CommandAction.ARM: AlarmKind.ARM_FAILED, CommandAction.DISARM: AlarmKind.DISARM_FAILED}
_ACTION_OF = {kind.value: action.value for action, kind in FAILURE_ALARMS.items()}
#: The latest command of one action a seal acknowledged in a case below a failed one, above any of the other action.
_OTHER = aliased(CourtCommand)
_FULFILLED = select(func.max(CourtCommand.id)).where(
    CourtCommand.device_id == bindparam("device_id"),
    CourtCommand.case_no == bindparam("case_no"),
    CourtCommand.action == bindparam("action"),
    (CourtCommand.state == CommandState.ACKNOWLEDGED.value) | CourtCommand.id.in_(bindparam("acked", expanding=True)),
    CourtCommand.id < bindparam("failed"),
    CourtCommand.id
    > select(func.coalesce(func.max(_OTHER.id), 0))
    .where(
        _OTHER.device_id == bindparam("device_id"),
        _OTHER.action.in_(bindparam("other", expanding=True)),
        _OTHER.id < bindparam("failed"),
    )
    .scalar_subquery(),
)
#: The latest arm or disarm each of some seals acknowledged.
_ACKNOWLEDGED = (
    select(CourtCommand.device_id, func.max(CourtCommand.id))
    .where(
        CourtCommand.device_id.in_(bindparam("device_ids", expanding=True)),
        CourtCommand.state == CommandState.ACKNOWLEDGED.value,
        CourtCommand.action.in_([action.value for action in FAILURE_ALARMS]),
    )
    .group_by(CourtCommand.device_id)
)
#: The case each of some seals is bound to now.
_BOUND = select(Seal.device_id, Seal.case_no).where(Seal.device_id.in_(bindparam("device_ids", expanding=True)))
#: The seal's latest arm or disarm, and the case it is bound to now.
_LATEST = select(
    select(func.max(CourtCommand.id))
    .where(
        CourtCommand.device_id == bindparam("device_id"),
        CourtCommand.action.in_([action.value for action in FAILURE_ALARMS]),
    )
    .scalar_subquery(),
    select(Seal.case_no).where(Seal.device_id == bindparam("device_id")).scalar_subquery(),
)


def raise_failed(
    book: AlarmBook,
    command: CourtCommand,
    *,
    at: datetime,
    reason: str,
    event_id: int | None = None,
    acked: frozenset[int] = frozenset(),
    marks: Mapping[str, Any] | None = None,
) -> Alarm | None:
    """The seal's alarm for ``command`` (expired or rejected, ``reason`` why), if its action has one, no later arm
    or disarm was issued to the seal, the seal is bound to the command's case still, and no earlier command the
    seal acknowledged (in the database, or of ``acked``: the caller's, not flushed yet) fulfils it."""
    kind = FAILURE_ALARMS.get(CommandAction(command.action))
    if kind is None:
        return None
    latest, case_no = book.session.execute(_LATEST, {"device_id": command.device_id}).one()
    if latest != command.id or case_no != command.case_no:
        return None
    fulfilled = fulfilled_by(book.session, command.device_id, command.case_no, command.action, command.id, acked)
    if fulfilled is not None:
        return None  # the seal's signed ack of an earlier one says it has done what this one asked
    details: dict[str, Any] = {
        "command_id": command.id,
        "action": command.action,
        "state": command.state,
        "reason": reason,
        "refusal": command.reason,  # the seal's RejectReason, if it refused it
        # ... of the court's own bytes, which it could not verify: not a forged command's refusal
        "refusal_own": refused_own_bytes(command.result, signed_sha256(command.signed)),
        "issued_at": command.issued_at.isoformat(),
        "expires_at": command.expires_at.isoformat(),
    }
    # the refusal's event's marks (:func:`~server.alarms.event_details.event_marks`), as every alarm from an event has:
    # signed as a simulated seal's, or received well after the seal signed it
    details.update(marks or {})
    return book.raise_alarm(
        kind, device_id=command.device_id, case_no=command.case_no, at=at, details=details, event_id=event_id
    )


def close_failed(
    book: AlarmBook, command: CourtCommand, *, at: datetime, acked: frozenset[int] = frozenset()
) -> list[Alarm]:
    """Close the seal's arm and disarm alarms in ``command``'s case raised for this command or an earlier one: the
    seal acknowledged ``command``, an arm or a disarm (what the court wants of it now, done); and those raised for a
    later command of the same action that the ack fulfils (no command of the other action issued between).
    ``acked``: the other commands the caller's transaction acknowledged (not flushed yet)."""
    if CommandAction(command.action) not in FAILURE_ALARMS:
        return []
    note = f"the seal acknowledged command {command.id} ({command.action})"

    def ended(alarm: Alarm) -> bool:
        failed = _failed_command(alarm)
        if failed <= command.id:
            return True
        return _fulfilled(book.session, alarm, acked | {command.id}) is not None

    closed: list[Alarm] = []
    for kind in FAILURE_ALARMS.values():
        closed += book.close(kind, device_id=command.device_id, at=at, note=note, case_no=command.case_no, only=ended)
    return closed


def fulfilled_by(
    session: Session, device_id: str, case_no: str, action: str, failed_id: int, acked: Collection[int] = ()
) -> int | None:
    """The latest command of ``action`` (an arm or a disarm) to the seal in ``case_no``, below ``failed_id``, that
    the seal acknowledged with no command of the other action issued between them: the seal's signed word that it
    has done what ``failed_id`` asks (it carries out commands in id order), so ``failed_id``'s failure needs no
    person. ``None`` if there is none. ``acked``: commands acknowledged in the caller's transaction, not flushed."""
    other = [a.value for a in FAILURE_ALARMS if a.value != action]
    values = {"device_id": device_id, "case_no": case_no, "action": action, "failed": failed_id, "other": other}
    found: int | None = session.execute(_FULFILLED, {**values, "acked": sorted(acked)}).scalar_one_or_none()
    return found


def _fulfilled(session: Session, alarm: Alarm, acked: Collection[int] = ()) -> int | None:
    """:func:`fulfilled_by` for the command an arm or disarm alarm names."""
    failed = _failed_command(alarm)
    if failed > MAX_COMMAND_ID or alarm.case_no is None:
        return None
    return fulfilled_by(session, alarm.device_id, alarm.case_no, _ACTION_OF[alarm.kind], failed, acked)


@dataclass(frozen=True, slots=True)
class Settled:
    """A command a seal's answer just settled: acknowledged or rejected, when, and the answer's stored row's id."""

    command_id: int
    outcome: AnswerOutcome
    at: datetime
    row_id: Callable[[], int]
    #: The answer's marks (:func:`~server.alarms.event_details.event_marks`): signed as a simulated seal's, received
    #: well after it was signed.
    marks: Mapping[str, Any] = field(default_factory=dict)


def on_settled(book: AlarmBook, settled: Sequence[Settled]) -> None:
    """The arm and disarm alarms of the commands one ingest batch's answers settled (in command id order): an ack
    closes them (:func:`close_failed`); a refusal raises one (:func:`raise_failed`), after every answer of the batch,
    unless another copy of the command was carried out in it."""
    refused: list[tuple[CourtCommand, Settled]] = []
    acked = frozenset(one.command_id for one in settled if one.outcome is AnswerOutcome.ACKNOWLEDGED)
    for one in settled:
        command = book.session.get(CourtCommand, one.command_id)
        assert command is not None  # locked and changed by the answer
        if one.outcome is AnswerOutcome.ACKNOWLEDGED:
            close_failed(book, command, at=one.at, acked=acked)
        else:
            refused.append((command, one))
    for command, one in refused:
        if command.state == CommandState.REJECTED.value:
            reason = f"the seal refused it: {command.reason}"
            raise_failed(book, command, at=one.at, reason=reason, event_id=one.row_id(), acked=acked, marks=one.marks)


def expire_due_and_alarm(
    session: Session, *, now: datetime, due_before: datetime | None = None
) -> list[tuple[int, str]]:
    """:func:`~server.commands.service.expire_due` (those past their expiry before ``due_before``, default ``now``:
    the dispatcher passes the ingest's caught-up mark, so that an answer sent in time is applied first), and the
    alarm of each arm or disarm it expires (in the caller's transaction); return the (id, device_id) expired. The
    live alarms of the seals with an arm or a disarm due are locked before the commands, the ingest's order
    (:mod:`server.ingest.rows`)."""
    due = due_commands(session, now=now, due_before=due_before)
    if not due:
        return []
    alarming = {device_id for _, device_id, action in due if action in FAILURE_ALARMS}
    book = AlarmBook(session, fold_window=timedelta(0), device_ids=alarming, on_open=notifying(session))
    book.lock()
    # Then their seals' rows, before the commands (the ingest's order): an arm or disarm alarm opens only under its
    # seal's row, where it is looked for again (server.alarms.book), the ingest's answers holding it too.
    if alarming:  # FOR NO KEY UPDATE, as every writer of seal rows (server.ingest.rows)
        seals = select(Seal.id).where(Seal.device_id.in_(sorted(alarming))).order_by(Seal.device_id)
        session.execute(seals.with_for_update(key_share=True))
    ids = [command_id for command_id, _, _ in due]
    expired = expire_due(session, now=now, command_ids=ids, due_before=due_before)
    for command_id, device_id in expired:
        if device_id in alarming:
            command = session.get(CourtCommand, command_id)
            assert command is not None  # just expired
            raise_failed(book, command, at=now, reason="no answer from the seal before its expiry")
    return expired


def close_settled(session: Session, *, now: datetime) -> list[Alarm]:
    """Close (in the caller's transaction) each live arm or disarm alarm whose condition has ended though nothing
    closed it at once: the seal acknowledged that command or a later arm or disarm (an ack the ingest applied
    beside the expiry that raised the alarm, in another transaction), or it is no longer bound to the alarm's case
    (a lifting); and each but the newest of one seal's in one case and of one kind (raised twice by two such
    transactions). Each alarm is locked alone, by id, as a person's closing is, and looked at again; return those
    closed."""
    kinds = [kind.value for kind in FAILURE_ALARMS.values()]
    live = list(session.scalars(select(Alarm).where(Alarm.kind.in_(kinds), Alarm.state.in_(LIVE_STATES))))
    if not live:
        return []
    devices = sorted({alarm.device_id for alarm in live})
    ended = _Ended(
        acked=dict(session.execute(_ACKNOWLEDGED, {"device_ids": devices}).all()),
        bound=dict(session.execute(_BOUND, {"device_ids": devices}).all()),
        newest={},
        fulfilled={alarm.id: _fulfilled(session, alarm) for alarm in live},
    )
    for alarm in live:
        key = (alarm.device_id, alarm.case_no, alarm.kind)
        ended.newest[key] = max(ended.newest.get(key, 0), alarm.id)
    closing = sorted(alarm.id for alarm in live if ended.why(alarm) is not None)
    if not closing:
        return []
    closed = []
    locked = select(Alarm).where(Alarm.id.in_(closing)).order_by(Alarm.id).with_for_update()
    for alarm in session.scalars(locked.execution_options(populate_existing=True)):
        note = ended.why(alarm)
        if note is None or alarm.state not in LIVE_STATES:  # folded or closed meanwhile
            continue
        alarm.state = transition(alarm.state, AlarmState.CLOSED).value
        alarm.closed_at, alarm.closed_by, alarm.closed_note = now, None, f"system: {note}"
        closed.append(alarm)
    session.flush()
    return closed


@dataclass
class _Ended:
    """What ends an arm or disarm alarm: the latest arm or disarm each seal acknowledged, the case each is bound
    to, the newest live alarm of each (seal, case, kind), and the earlier ack that fulfils each alarm's command."""

    acked: dict[str, int]
    bound: dict[str, str | None]
    newest: dict[tuple[str, str, str], int]
    fulfilled: dict[int, int | None]

    def why(self, alarm: Alarm) -> str | None:
        """Why the alarm's condition has ended, if it has."""
        if self.bound.get(alarm.device_id) != alarm.case_no:
            return "the seal is no longer bound to the case"
        acked = self.acked.get(alarm.device_id)
        if acked is not None and acked >= _failed_command(alarm):
            return f"the seal acknowledged command {acked}"
        fulfilled = self.fulfilled.get(alarm.id)
        if fulfilled is not None:
            return f"the seal acknowledged command {fulfilled}, which did what the failed one asked"
        newest = self.newest[(alarm.device_id, alarm.case_no, alarm.kind)]
        if newest != alarm.id:
            return f"a duplicate of alarm {newest}"
        return None


def _failed_command(alarm: Alarm) -> int:
    """The command an arm or disarm alarm names last (the largest id: a malformed one closes nothing)."""
    failed = alarm.details.get("command_id")
    return failed if isinstance(failed, int) and not isinstance(failed, bool) else MAX_COMMAND_ID + 1
