"""Alarms for an ``arm`` or a ``disarm`` the seal did not carry out: it expired unanswered, or the seal refused it.

A seal that does not arm when the judge withdraws an approval stays disarmed on a sealed site; a disarm not carried
out holds up a lifting. Either needs a person, and until now only the command's row (and the removal request's page,
for a disarm) said so. The alarm (``arm_failed``, ``disarm_failed``) is a condition of the seal in the command's
case — one live alarm per seal, later failures folded into it — raised in the transaction that settles the command:
the dispatcher's expiry of a command past its expiry unanswered (:func:`~server.commands.service.expire_due`), the
ingest's applying of the seal's signed ``command_rejected``. A command followed by a later ``arm`` or ``disarm`` to
its seal (a withdrawn approval's disarms are followed by its arm), or whose seal left its case, raises none: what
the court wants of the seal now is the later command. The system closes the alarm when the seal acknowledges that
command (late) or a later one of the same action: the seal did what was asked.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import bindparam, func, select
from sqlalchemy.orm import Session

from seal_protocol.commands import CommandAction
from server.alarms.book import AlarmBook
from server.alarms.models import Alarm
from server.alarms.state import AlarmKind
from server.commands.models import CourtCommand
from server.commands.service import due_commands, expire_due
from server.evidence.models import Event
from server.notify.outbox import notifying
from server.seals.models import Seal

#: The alarm of each action whose failure needs a person.
FAILURE_ALARMS = {CommandAction.ARM: AlarmKind.ARM_FAILED, CommandAction.DISARM: AlarmKind.DISARM_FAILED}
#: The seal's latest arm or disarm, and the case it is bound to now.
_LATEST = select(
    select(func.max(CourtCommand.id))
    .where(CourtCommand.device_id == bindparam("device_id"), CourtCommand.action.in_([a.value for a in FAILURE_ALARMS]))
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
        "issued_at": command.issued_at.isoformat(),
        "expires_at": command.expires_at.isoformat(),
    }
    return book.raise_alarm(
        kind, device_id=command.device_id, case_no=command.case_no, at=at, details=details, event=event
    )


def close_failed(book: AlarmBook, command: CourtCommand, *, at: datetime) -> list[Alarm]:
    """Close the seal's alarms of ``command``'s action in its case raised for this command or an earlier one: the
    seal acknowledged ``command``."""
    kind = FAILURE_ALARMS.get(CommandAction(command.action))
    if kind is None:
        return []
    note = f"the seal acknowledged command {command.id} ({command.action})"

    def earlier(alarm: Alarm) -> bool:
        failed = alarm.details.get("command_id")
        return isinstance(failed, int) and failed <= command.id

    return book.close(kind, device_id=command.device_id, at=at, note=note, case_no=command.case_no, only=earlier)


def expire_due_and_alarm(session: Session, *, now: datetime) -> list[tuple[int, str]]:
    """:func:`~server.commands.service.expire_due`, and the alarm of each arm or disarm it expires (in the caller's
    transaction); return the (id, device_id) expired. The seals' live alarms are locked before the commands, the
    ingest's order (:mod:`server.ingest.rows`)."""
    due = due_commands(session, now=now)
    if not due:
        return []
    book = AlarmBook(session, fold_window=timedelta(0), device_ids={d for _, d in due}, on_open=notifying(session))
    book.lock()
    expired = expire_due(session, now=now, command_ids=[command_id for command_id, _ in due])
    for command_id, _device_id in expired:
        command = session.get(CourtCommand, command_id)
        assert command is not None  # just expired
        raise_failed(book, command, at=now, reason="no answer from the seal before its expiry")
    return expired
