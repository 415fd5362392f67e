"""A sensor's level against what the seal believes from its edges: an edge the pin factory loses is caught by a level
check, and the event it gives says so.

The timer reads each sensor (the PIR, the tamper switch) at least every :data:`RECONCILE_S` seconds.
A reading that agrees with the belief is remembered with its monotonic time. A level that disagrees with the belief
at two readings at least ``settle_s`` apart means an edge was lost: :meth:`LevelCheck.missed` returns it as
:class:`Caught`, whose :meth:`Caught.payload` the event then signs: ``detected_by: "level_check"`` and
``not_before``, the time of the last reading of the level before (the edge came after it and before the event's
``ts``, when it was caught). That time is kept on the monotonic clock (a
:class:`~seal_agent.journal.timeline.Moment`) and told in the wall clock of the event's own ``ts``, as the recorder
stamps it at the event's place in the chain, so a wall clock stepped in between (a ``clock_stepped`` before the
event) never puts ``not_before`` after ``ts``, nor moves one without the other.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from seal_agent.interfaces import Clock
from seal_agent.journal.timeline import Moment

#: How often the timer compares the sensors' levels with what their edges said (a missed edge is caught).
RECONCILE_S = 1.0


@dataclass(frozen=True, slots=True)
class Caught:
    """An edge the level check caught: the level the sensor went to, and the time of the last reading of the level it
    left, on the monotonic clock (``None`` if it was never read so)."""

    active: bool
    not_before: float | None

    def payload(self) -> dict[str, Any]:
        """The fields the edge's event signs: how it was detected, and the earliest the edge can have been."""
        return {
            "detected_by": "level_check",
            "not_before": None if self.not_before is None else Moment(self.not_before),
        }


class LevelCheck:
    """Compares the level ``read`` returns with the belief the caller keeps from the sensor's edges."""

    def __init__(self, read: Callable[[], bool], clock: Clock, *, settle_s: float = RECONCILE_S / 2) -> None:
        self._read = read
        self._clock = clock
        self._settle_s = settle_s
        self._lock = threading.Lock()
        self._mismatch_since: float | None = None
        self._last: dict[bool, float | None] = {False: None, True: None}  # last reading of each level (monotonic)

    def saw(self, active: bool) -> None:
        """The sensor was seen at level ``active`` now (an edge's callback, or the check acting on a level)."""
        seen = self._clock.monotonic()
        with self._lock:
            self._last[active] = seen

    def missed(self, believed: bool, now: float) -> Caught | None:
        """Read the level at ``now`` (monotonic); the edge that was lost, once the level has disagreed with
        ``believed`` for ``settle_s``, else None."""
        seen = self._clock.monotonic()  # before the reading: the level read was so at this time or later
        active = self._read()
        with self._lock:
            if active == believed:
                self._mismatch_since = None
                self._last[active] = seen
                return None
            if self._mismatch_since is None:
                self._mismatch_since = now
                return None
            if now - self._mismatch_since < self._settle_s:
                return None
            self._mismatch_since = None
            last = self._last[not active]
        return Caught(active, last)
