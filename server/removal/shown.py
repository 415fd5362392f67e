"""What a reader of a removal request may see of its seals and its history — the one place that decides it, for
the API (:mod:`server.api.removal_schemas`) and the pages (:mod:`server.web.removal_view`).

A reader with the permission ``seal:status`` (the judge, the clerk, the officers, the creditor) sees everything. A
reader without it (the debtor, whoever holds the paper access code) must not learn which seal is deaf, or when:

- a seal that has not acknowledged — ``sent``, ``waiting_for_seal``, ``refused`` — or that the judge decided to lift
  without its acknowledgement (``without_ack``) is ``pending``, in every state of the request (also once it is
  ``lifted`` or ``aborted``: a final request keeps what it showed while it was open, and after an abort the deaf seal
  still guards the door), with no reason of a refusal and nothing of what the officer found of it;
- a step of the history that tells of a seal's answering — a re-sent disarm, the judge's decision to lift without a
  seal's acknowledgement, the server's note on which seals acknowledged or said they are armed again — is
  ``court_processing``, "法院处理中 / The court is processing", its note (the judge's or the server's, naming seals
  and how they stood) not shown.

The server's own notes are stored as the catalogue's key and values (:attr:`StepShown.said`): a page says them in
its reader's language, the API gives them written out Chinese first, with English (``zh / en``). A step stored before
that keeps its note as written: ``zh / en``, or, stored before those, English only, shown with the step's Chinese
before it (:data:`SERVER_NOTES_ZH`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import datetime

from server.errors import Said
from server.removal.models import RemovalStep
from server.removal.progress import SealProgress, SealStatus
from server.removal.state import RemovalAction, RemovalState
from server.words import said_of, said_words

#: Statuses a reader without ``seal:status`` is shown as ``pending``: each tells that a seal did not answer.
PENDING_FOR_THEM = frozenset(
    {SealStatus.SENT, SealStatus.WAITING_FOR_SEAL, SealStatus.REFUSED, SealStatus.WITHOUT_ACK, SealStatus.WITHDRAWN}
)
#: Statuses a reader without ``seal:status`` is shown as ``pending`` while the request is open: each tells whether a
#: seal stands disarmed before the officer has come.
HIDDEN_WHILE_OPEN = frozenset({SealStatus.DISARMED, SealStatus.REARMED})
#: Steps whose action or note tells of a seal's answering (the note is the judge's about the seals, or the server's).
ABOUT_SEALS = frozenset(
    {
        RemovalAction.RESEND_DISARM,
        RemovalAction.LIFT_WITHOUT_ACK,
        RemovalAction.CONFIRM_DISARMED,
        RemovalAction.ARMED_AGAIN,
    }
)
#: What such a step is shown as to a reader without ``seal:status``: no seal, no state of a seal.
COURT_PROCESSING = "court_processing"
PROCESSING_SAID = Said("removal_note.court_processing")
PROCESSING_NOTE = " / ".join(said_words(PROCESSING_SAID))
#: The steps whose note the server writes, and its Chinese, put before a note stored English only (before the notes
#: were written ``zh / en``): ``已向电子封条发出解除布防指令 / disarm sent to 2 seal(s)``.
SERVER_NOTES_ZH = {
    RemovalAction.ISSUE_DISARM.value: "已向电子封条发出解除布防指令",
    RemovalAction.CONFIRM_DISARMED.value: "解除布防已办结（依封条签名应答或法官决定）",
    RemovalAction.ARMED_AGAIN.value: "封条确认解除布防后，其签名消息表明其未处于解除布防状态",
}
_CHINESE = re.compile(r"[\u3400-\u9fff]")


@dataclass(frozen=True)
class StepShown:
    at: datetime
    actor: str  # the username then, or '-' for the server itself
    action: str
    from_state: RemovalState | None
    to_state: RemovalState
    note: str  # Chinese first, with English, or a person's note as written
    said: Said | None = None  # the server's note, for a page to say in its reader's language


def as_pending(status: SealStatus) -> SealStatus:
    """``status`` as a reader without ``seal:status`` is shown it."""
    return SealStatus.PENDING if status in PENDING_FOR_THEM else status


def seal_shown(progress: SealProgress, *, full: bool, final: bool) -> SealProgress:
    """``progress`` as the reader may see it (``full``: with ``seal:status``; ``final``: the request is lifted or
    aborted). Without ``seal:status``, the fields about the seal's commands are still in the value (the API and the
    pages leave them out), and while the request is open no seal's armed state either — not even a seal's signed
    answer to the disarm (:data:`HIDDEN_WHILE_OPEN`): the debtor is not told a seal is disarmed before the officer
    has come, as the notice and the portal do not tell it (``CaseStatus.hides_armed_state``)."""
    if full:
        return progress
    status = as_pending(progress.status)
    if not final and status in HIDDEN_WHILE_OPEN:
        status = SealStatus.PENDING
    armed = progress.armed if final else None
    return replace(progress, status=status, armed=armed, reason=None, found=None, waived=None)


def step_shown(step: RemovalStep, *, full: bool) -> StepShown:
    """A step of the history as the reader may see it (``full``: with ``seal:status``)."""
    action, note = step.action, step.note
    said = said_of(step.note_said) if step.note_said is not None else None
    if action in SERVER_NOTES_ZH and note and said is None and not _CHINESE.search(note):
        note = f"{SERVER_NOTES_ZH[action]} / {note}"
    if not full and action in ABOUT_SEALS:
        action, note, said = COURT_PROCESSING, PROCESSING_NOTE, PROCESSING_SAID
    return StepShown(
        at=step.at,
        actor=step.actor,
        action=action,
        from_state=RemovalState(step.from_state) if step.from_state else None,
        to_state=RemovalState(step.to_state),
        note=note,
        said=said,
    )


def steps_shown(steps: list[RemovalStep], *, full: bool) -> list[StepShown]:
    return [step_shown(step, full=full) for step in steps]
