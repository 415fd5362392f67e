"""Alarms for an ``arm`` or a ``disarm`` the seal did not carry out: it expired unanswered, or the seal refused it.

A seal that does not arm when the judge withdraws an approval stays disarmed on a sealed site; a disarm not carried
out holds up a lifting. Either needs a person, and until now only the command's row (and the removal request's page,
for a disarm) said so. The alarm (``arm_failed``, ``disarm_failed``) is a condition of the seal in the command's
case — one live alarm per seal, later failures folded into it — raised in the transaction that settles the command:
the dispatcher's expiry of a command past its expiry unanswered (:func:`~server.commands.service.expire_due`), the
ingest's applying of the seal's signed ``command_rejected``. A command followed by a later ``arm`` or ``disarm`` to
its seal (a withdrawn approval's disarms are followed by its arm), or whose seal left its case, raises none: what
the court wants of the seal now is the later command. The system closes the alarm when the seal acknowledges that
command (late) or a later arm or disarm (:func:`close_failed`, in the ingest): what the court wants of it now is
done. The command dispatcher's rounds close what that missed (:func:`close_settled`): an ack applied beside the
expiry that raised the alarm, by a transaction that had read the seal's alarms before that expiry committed (two
alarms for one command, then, of a refusal); and the alarm of a seal no longer bound to its case (a lifting).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import bindparam, func, select
from sqlalchemy.orm import Session

from seal_protocol.commands import CommandAction
from server.alarms.book import AlarmBook
from server.alarms.models import Alarm
from server.alarms.state import LIVE_STATES, AlarmKind, AlarmState, transition
from server.commands.models import CourtCommand
from server.commands.service import MAX_COMMAND_ID, AnswerOutcome, due_commands, expire_due
from server.commands.state import CommandState
from server.evidence.models import Event
from server.notify.outbox import notifying
from server.seals.models import Seal

#: The alarm of each action whose failure needs a person.
FAILURE_ALARMS = {CommandAction.ARM: AlarmKind.ARM_FAILED, CommandAction.DISARM: AlarmKind.DISARM_FAILED}
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
    book: AlarmBook, command: CourtCommand, *, at: datetime, reason: str, event: Event | None = None
) -> Alarm | None:
    """The seal's alarm for ``command`` (expired or rejected, ``reason`` why), if its action has one, no later arm
    or disarm was issued to the seal, and the seal is bound to the command's case still."""
    kind = FAILURE_ALARMS.get(CommandAction(command.action))
    if kind is None:
        return None
    latest, case_no = book.session.execute(_LATEST, {"device_id": command.device_id}).one()
    if latest != command.id or case_no != command.case_no:
        return None
    details = {
        "command_id": command.id,
        "action": command.action,
        "state": command.state,
        "reason": reason,
        "refusal": command.reason,  # the seal's RejectReason, if it refused it
        "issued_at": command.issued_at.isoformat(),
        "expires_at": command.expires_at.isoformat(),
    }
    return book.raise_alarm(
        kind, device_id=command.device_id, case_no=command.case_no, at=at, details=details, event=event
    )


def close_failed(book: AlarmBook, command: CourtCommand, *, at: datetime) -> list[Alarm]:
    """Close the seal's arm and disarm alarms in ``command``'s case raised for this command or an earlier one: the
    seal acknowledged ``command``, an arm or a disarm (what the court wants of it now, done)."""
    if CommandAction(command.action) not in FAILURE_ALARMS:
        return []
    note = f"the seal acknowledged command {command.id} ({command.action})"
    closed: list[Alarm] = []
    for kind in FAILURE_ALARMS.values():
        closed += book.close(
            kind,
            device_id=command.device_id,
            at=at,
            note=note,
            case_no=command.case_no,
            only=lambda alarm: _failed_command(alarm) <= command.id,
        )
    return closed


@dataclass(frozen=True, slots=True)
class Settled:
    """A command a seal's answer just settled: acknowledged or rejected, when, and the answer's stored row."""

    command_id: int
    outcome: AnswerOutcome
    at: datetime
    row: Callable[[], Event]


def on_settled(book: AlarmBook, settled: Sequence[Settled]) -> None:
    """The arm and disarm alarms of the commands one ingest batch's answers settled (in command id order): an ack
    closes them (:func:`close_failed`); a refusal raises one (:func:`raise_failed`), after every answer of the batch,
    unless another copy of the command was carried out in it."""
    refused: list[tuple[CourtCommand, Settled]] = []
    for one in settled:
        command = book.session.get(CourtCommand, one.command_id)
        assert command is not None  # locked and changed by the answer
        if one.outcome is AnswerOutcome.ACKNOWLEDGED:
            close_failed(book, command, at=one.at)
        else:
            refused.append((command, one))
    for command, one in refused:
        if command.state == CommandState.REJECTED.value:
            reason = f"the seal refused it: {command.reason}"
            raise_failed(book, command, at=one.at, reason=reason, event=one.row())


def expire_due_and_alarm(session: Session, *, now: datetime) -> list[tuple[int, str]]:
    """:func:`~server.commands.service.expire_due`, and the alarm of each arm or disarm it expires (in the caller's
    transaction); return the (id, device_id) expired. The live alarms of the seals with an arm or a disarm due are
    locked before the commands, the ingest's order (:mod:`server.ingest.rows`)."""
    due = due_commands(session, now=now)
    if not due:
        return []
    alarming = {device_id for _, device_id, action in due if action in FAILURE_ALARMS}
    book = AlarmBook(session, fold_window=timedelta(0), device_ids=alarming, on_open=notifying(session))
    book.lock()
    expired = expire_due(session, now=now, command_ids=[command_id for command_id, _, _ in due])
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
    to, and the newest live alarm of each (seal, case, kind)."""

    acked: dict[str, int]
    bound: dict[str, str | None]
    newest: dict[tuple[str, str, str], int]

    def why(self, alarm: Alarm) -> str | None:
        """Why the alarm's condition has ended, if it has."""
        if self.bound.get(alarm.device_id) != alarm.case_no:
            return "the seal is no longer bound to the case"
        acked = self.acked.get(alarm.device_id)
        if acked is not None and acked >= _failed_command(alarm):
            return f"the seal acknowledged command {acked}"
        newest = self.newest[(alarm.device_id, alarm.case_no, alarm.kind)]
        if newest != alarm.id:
            return f"a duplicate of alarm {newest}"
        return None


def _failed_command(alarm: Alarm) -> int:
    """The command an arm or disarm alarm names last (the largest id: a malformed one closes nothing)."""
    failed = alarm.details.get("command_id")
    return failed if isinstance(failed, int) and not isinstance(failed, bool) else MAX_COMMAND_ID + 1
