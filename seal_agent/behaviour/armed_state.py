"""The seal's durable armed state, and what becomes of it when the seal starts configured for another case.

The state is committed with the ``armed``/``disarmed`` event that changes it (outbox settings, one transaction): the
state, the court command that set it (``by``) and the case it was set in (the configured ``case_no`` then). A disarm
belongs to its case: a removal approved in case A lifts A's seal. A seal disarmed there and installed on case B's
premises (its configuration given B's ``case_no``) must not guard B disarmed, silent at every intrusion, though no
disarm was ever given in B: it starts armed, and says why first — an ``armed`` event with the reason
:data:`NEW_CASE`, committed before it guards (docs/protocol.md, "The armed state at start"). A restart in the same
case (the same number in another spelling, e.g. full-width parentheses, included) keeps it disarmed: a seal being
removed does not arm itself when it reboots.

Outboxes of an older agent recorded no case with the state: the case of the last committed event, if the outbox
still holds it, stands in (the seal last ran, in that state, in that case); if it holds none, nothing
tells, and the state is kept. Either way the case it then belongs to is recorded at that start, so the next move is
seen.
"""

from __future__ import annotations

import logging

from seal_agent.errors import OutboxError
from seal_agent.journal.outbox import Outbox
from seal_agent.journal.recorder import EventRecorder
from seal_protocol import EventType, decode_envelope
from seal_protocol.case_numbers import same_case_no
from seal_protocol.errors import ProtocolError

logger = logging.getLogger(__name__)

ARMED_SETTING = "armed"
#: The court command whose ``armed``/``disarmed`` set the present state ("" for a local change), committed with it.
CHANGED_BY_SETTING = "armed_by"
#: The ``case_no`` the seal was configured for when the present state was set, committed with it.
CASE_SETTING = "armed_case"
#: The ``armed`` event's ``reason`` when the seal starts configured for another case than its disarm's.
NEW_CASE = "new_case"


def committed_state(*, armed: bool, by: int | None, case_no: str) -> dict[str, str]:
    """The settings an ``armed``/``disarmed`` event commits with it."""
    return {
        ARMED_SETTING: "1" if armed else "0",
        CHANGED_BY_SETTING: "" if by is None else str(by),
        CASE_SETTING: case_no,
    }


def stored_armed(outbox: Outbox) -> bool:
    """The committed state: armed unless a ``disarmed`` set it (a new seal starts armed)."""
    return outbox.setting(ARMED_SETTING) != "0"


def arm_for_new_case(recorder: EventRecorder) -> bool:
    """Call at start, before the seal guards, if it is disarmed: if its disarm was given in another case than the
    configured one, put its ``armed`` (reason :data:`NEW_CASE`) in line before any later event and return True (it is
    armed from now on, also while that event waits for room on a full disk); else False."""
    case_no = recorder.case_no
    disarmed_in = _case_of_state(recorder.outbox, case_no)
    if disarmed_in is None or same_case_no(disarmed_in, case_no):
        return False
    logger.warning("disarmed in case %s, now configured for case %s: armed again", disarmed_in, case_no)
    recorder.record_in_line(
        EventType.ARMED,
        {"reason": NEW_CASE, "by": None, "disarmed_case_no": disarmed_in},
        settings=committed_state(armed=True, by=None, case_no=case_no),
    )
    return True


def _case_of_state(outbox: Outbox, case_no: str) -> str | None:
    """The case the committed state was set in; for an older agent's outbox, that of its last committed event (then
    recorded as ``case_no`` if it is that case, or if none is left); None if nothing tells."""
    case = outbox.setting(CASE_SETTING)
    if case is not None:
        return case
    case = _last_event_case(outbox)
    if case is None:
        logger.warning("the outbox does not say which case the seal was disarmed in: it stays disarmed")
    if case is None or same_case_no(case, case_no):
        try:
            outbox.set_setting(CASE_SETTING, case_no)
        except OutboxError as exc:  # a full disk: the seal still starts; the next start records it
            logger.warning("the case of the armed state is not recorded: %s", exc)
    return case


def _last_event_case(outbox: Outbox) -> str | None:
    """The ``case_no`` of the last committed event, if the outbox still holds it (the court has not receipted it)."""
    last = outbox.last_seq
    held = outbox.pending(after=last - 1, limit=1) if last else []
    if not held or held[0].seq != last:
        return None
    try:
        return decode_envelope(held[0].data).case_no
    except ProtocolError:
        logger.exception("the outbox's last event (seq %d) cannot be read", last)
        return None
