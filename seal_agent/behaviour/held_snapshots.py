"""The snapshots kept in memory for triggers whose event waits in the recorder's line (a full disk).

A trigger's pre-trigger snapshots are hashed in memory and listed in its event; they are stored only once that event
is committed (:meth:`~seal_agent.interfaces.TriggerEvidence.keep`). While the outbox refuses events, every presence
would add its JPEGs to memory: :class:`HeldSnapshots` keeps those of at most :data:`HELD_EVIDENCE_MAX` such triggers
and lets a later one's go (:meth:`~seal_agent.interfaces.TriggerEvidence.drop`); their hashes are signed already, so
the trigger's ``snapshot_taken`` names them in ``not_stored``.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Callable

from seal_agent.errors import EventLost, OutboxError
from seal_agent.interfaces import TriggerEvidence
from seal_agent.journal.recorder import Turn

logger = logging.getLogger(__name__)

#: Triggers whose event waits in line and whose snapshots are kept in memory for it; a later one's are dropped.
HELD_EVIDENCE_MAX = 8


class HeldSnapshots:
    """Counts the triggers whose event is held and whose snapshots wait in memory for it. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._holding: set[Turn] = set()
        self._released: weakref.WeakSet[Turn] = weakref.WeakSet()  # settled before hold() saw them

    def hold(self, turn: Turn, evidence: TriggerEvidence) -> None:
        """The event of ``turn`` lists ``evidence``'s snapshots and was put in line: if it is held, count them, or
        past the bound let them go."""
        with self._lock:
            if turn in self._released or turn.settled:
                return
            if len(self._holding) < HELD_EVIDENCE_MAX:
                self._holding.add(turn)
                return
        logger.error("the snapshots of %s of %s dropped from memory: it waits for room", turn.type.value, turn.at)
        evidence.drop(
            f"dropped from memory: its event waited for room in the outbox behind {HELD_EVIDENCE_MAX} other "
            "triggers' events whose snapshots were kept"
        )

    def release(self, turn: Turn) -> None:
        """The event of ``turn`` is settled (committed, lost, or left in line at the stop): its follow-up starts."""
        with self._lock:
            self._released.add(turn)
            self._holding.discard(turn)


#: A trigger's seq, or (its event left in line at the stop: the recorder's close may yet commit it) how to read it
#: when a follow-up naming it is committed, behind it: its seq then, or None if it was lost or given up.
TriggerSeq = int | Callable[[], int | None]


def trigger_seq_of(stored_seq: int | None, turn: Turn | None) -> TriggerSeq | None:
    """The seq a trigger's follow-ups name: ``stored_seq`` if its event was committed, read late if it is still in
    line, else None (lost, or given up)."""
    if stored_seq is not None:
        return stored_seq
    if turn is not None and not turn.settled:
        return lambda: seq_of(turn)
    return seq_of(turn)


def seq_fields(seq: TriggerSeq) -> tuple[dict[str, int], Callable[[], dict[str, int | None]] | None]:
    """A follow-up's ``trigger_seq``: in its payload now, or as a late field read when it is committed."""
    if callable(seq):
        return {}, lambda: {"trigger_seq": seq()}
    return {"trigger_seq": seq}, None


def seq_of(turn: Turn | None) -> int | None:
    """The seq of the event of ``turn`` if it is committed (read when an event after it is committed)."""
    try:
        return None if turn is None else turn.result().seq
    except (OutboxError, EventLost):
        return None
