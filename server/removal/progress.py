"""What a seal of an approved removal request is shown as (:func:`server.removal.disarm.seal_progress`): its
status, the disarm it is shown by, and how the history and the audit log say where a seal stood."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum


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


def stood(progress: SealProgress) -> str:
    """Where a seal stood, in a note of the history: ``seal-a2 waiting_for_seal (disarm #5: expired)``."""
    status = progress.waived or progress.status
    return f"{progress.device_id} {status.value} (disarm #{progress.command_id}: {progress.command_state})"


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
