"""What a seal of an approved removal request is shown as (:func:`server.removal.disarm.seal_progress`): its
status, the disarm it is shown by, and how the history and the audit log say where a seal stood. The status of one
seal from its disarms, its signed word and the judge's decision is the pure :func:`progress_of`."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from server.commands.models import CourtCommand
from server.commands.state import CommandState
from server.errors import Said
from server.removal.models import RemovalWaiver
from server.seals.models import SealBinding


class SealStatus(StrEnum):
    """Where one seal of an approved request stands."""

    SENT = "sent"  # the disarm is valid and the seal has not answered yet
    WAITING_FOR_SEAL = "waiting_for_seal"  # the disarm expired unanswered (the seal is offline): re-send it
    REFUSED = "refused"  # the seal refused the disarm (e.g. expired by its clock): re-send it
    DISARMED = "disarmed"  # its signed command_ack arrived
    REARMED = "rearmed"  # it acknowledged, then its signed events said it is armed again: re-send a disarm
    WITHOUT_ACK = "without_ack"  # it does not answer; the judge decided to lift it without its acknowledgement
    PENDING = (
        "pending"  # only what a reader without seal:status is shown for any seal not yet heard (server.removal.shown)
    )
    #: Only in an aborted request's record: its disarm, unanswered, was withdrawn with the approval (the command is
    #: ``expired`` before its expiry, its ``command.expire`` audited as withdrawn) — not offline, nothing to re-send.
    WITHDRAWN = "withdrawn"


#: Whether a seal was bound to the request's case at a moment (by the court's clock).
Binding = Callable[[datetime], bool]
#: A seal that no longer holds the request up.
SETTLED = frozenset({SealStatus.DISARMED, SealStatus.WITHOUT_ACK})
#: A seal the judge may decide to lift without its acknowledgement: its disarm expired unanswered, or it refused it.
WAIVABLE = frozenset({SealStatus.WAITING_FOR_SEAL, SealStatus.REFUSED})
#: A seal that needs a new disarm.
DUE = frozenset({SealStatus.WAITING_FOR_SEAL, SealStatus.REFUSED, SealStatus.REARMED})
#: What each status asks for, in a refusal.
WANTING = {
    SealStatus.SENT: "the disarm is sent, no answer yet",
    SealStatus.WAITING_FOR_SEAL: "the disarm expired unanswered: re-send it, or the judge decides to lift it "
    "without its acknowledgement",
    SealStatus.REFUSED: "it refused the disarm: re-send it",
    SealStatus.REARMED: "its signed events say it is armed again: re-send the disarm",
}


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
    armed: bool | None  # as its latest signed event in the request's case says (None: it has not said there)
    found: str | None = None  # lifted without its ack: what the officer found on site (server.removal.lifting)
    waived: SealStatus | None = None  # lifted without its ack: where it stood (waiting_for_seal or refused)


def stood_said(progress: SealProgress) -> Said:
    """Where a seal stood, in a note of the history: ``seal-a2 等待封条上线（解除布防指令 #5：超时未应答）`` /
    ``seal-a2 Waiting for the seal (disarm #5: No answer in time)``."""
    status = progress.waived or progress.status
    values = {
        "device": progress.device_id,
        "status": Said(f"case_seal_progress.{status.value}"),
        "command": progress.command_id,
        "state": Said(f"case_command_state.{progress.command_state}"),
    }
    return Said("removal_note.stood", values)


def stood_details(progress: SealProgress) -> dict[str, object]:
    """Where a seal stood, in the audit log: its status, its disarm's id and state, and its answer's reason."""
    status = progress.waived or progress.status
    return {
        "status": status.value,
        "command_id": progress.command_id,
        "command_state": progress.command_state,
        "reason": progress.reason,
        "commands": progress.commands,
    }


@dataclass(frozen=True)
class DisarmAsOf:
    """A disarm of the request as it stood at a moment: an answer received later is not there yet."""

    id: int
    state: str
    issued_at: datetime
    expires_at: datetime
    answered_at: datetime | None
    answer_seq: int | None
    reason: str | None

    @classmethod
    def of(cls, command: CourtCommand, until: datetime | None) -> DisarmAsOf:
        if command.answered_at is None or until is None or command.answered_at <= until:
            answer = (command.state, command.answered_at, command.answer_seq, command.reason)
        else:  # answered after the request became final, which withdrew or ended every unanswered disarm
            answer = (CommandState.EXPIRED.value, None, None, None)
        state, answered_at, answer_seq, reason = answer
        return cls(command.id, state, command.issued_at, command.expires_at, answered_at, answer_seq, reason)


def binding_test(bindings: list[SealBinding], case_no: str) -> Binding:
    def bound_to_case(at: datetime) -> bool:
        if not bindings:  # bound before the binding history existed
            return True
        return any(
            b.case_no == case_no and b.bound_at <= at and (b.unbound_at is None or at <= b.unbound_at) for b in bindings
        )

    return bound_to_case


def progress_of(
    device_id: str,
    commands: Sequence[DisarmAsOf],
    now: datetime,
    said: tuple[bool, int] | None,
    bound_to_case: Binding,
    waiver: RemovalWaiver | None,
) -> SealProgress:
    """``said``: whether the seal's latest signed event in the request's case (while bound to it) said armed, and
    its seq."""
    acknowledged = [
        c
        for c in commands
        if c.state == CommandState.ACKNOWLEDGED and c.answered_at is not None and bound_to_case(c.answered_at)
    ]
    ack = acknowledged[-1] if acknowledged else None
    latest = commands[-1]
    armed_again = (
        ack is not None and said is not None and said[0] and ack.answer_seq is not None and said[1] > ack.answer_seq
    )
    command = latest
    if ack is not None and not armed_again:
        status, command = SealStatus.DISARMED, ack
    elif ack is not None and latest.id <= ack.id:
        status, command = SealStatus.REARMED, ack
    elif latest.state == CommandState.REJECTED:
        status = SealStatus.REFUSED
    elif latest.state == CommandState.PENDING and latest.expires_at > now:
        status = SealStatus.SENT
    else:  # expired, pending past its expiry (the dispatcher has not marked it yet), or answered while elsewhere
        status = SealStatus.WAITING_FOR_SEAL
    waived_as = None
    if waiver is not None and status in WAIVABLE:  # it covers a seal that does not answer, nothing else
        status, waived_as = SealStatus.WITHOUT_ACK, status
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
        armed=said[0] if said is not None else None,
        found=waiver.found if waiver is not None else None,
        waived=waived_as,
    )
