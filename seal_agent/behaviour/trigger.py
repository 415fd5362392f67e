"""One trigger as the responder follows it (:mod:`seal_agent.behaviour.triggers`): when its edge was, what became of
its event (its ``seq``, or its place in the recorder's line) and of a pending confirmation."""

from __future__ import annotations

import threading

from seal_agent.behaviour.held_snapshots import TriggerSeq, trigger_seq_of
from seal_agent.behaviour.warning_outcome import WarningStart
from seal_agent.journal.recorder import Turn


class Trigger:
    """One trigger: its kind and the time of its edge (``at``, on the monotonic clock the camera's windows use; its
    event's ``ts`` tells it in the wall clock in force at its place in the chain); its event's seq once committed; a
    pending confirmation's outcome."""

    def __init__(self, kind: str, at: float) -> None:
        self.kind = kind
        self.at = at
        self.seq: int | None = None
        self.outcome: str | None = None  # the warning decided by a confirmation, if one was pending
        self.start: WarningStart | None = None  # the warning that confirmation started
        self.late_verdict: str | None = None
        self.decided = threading.Event()  # set once no confirmation is pending
        self.turn: Turn | None = None  # its event's place in the recorder's line
        self.unkept: str | None = None  # the outbox record of its snapshots until they are stored (:mod:`.unkept`)

    @property
    def follow_seq(self) -> TriggerSeq | None:
        """The seq its follow-ups name: see :func:`~seal_agent.behaviour.held_snapshots.trigger_seq_of`."""
        return trigger_seq_of(self.seq, self.turn)
