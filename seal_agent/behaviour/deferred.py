"""The warning of an intrusion that began within the cool-down: its event says ``deferred_cooldown`` (no warning yet,
one is due when the cool-down ends if the presence goes on), and a ``warning_result`` naming that event's ``seq``
says later what became of it: the warning's outcome (``played``, ``failed``, ``stopped``; ``busy`` if another was
playing), or no warning at all (``suppressed_cooldown``: the presence ended first; ``suppressed_disarmed``). A seal
that stops before either sends none: no warning was started, so none was cut short (``stopped``), and what did not
happen is not signed as something that did.

Two things must be known before that ``warning_result`` can be recorded, in either order: the ``seq`` of the
intrusion's event (committed on the trigger worker) and the decision (taken on the seal's timer or sensor thread).
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from seal_agent.behaviour.held_snapshots import TriggerSeq
from seal_agent.behaviour.warning_outcome import WarningStart

#: An intrusion's ``warning`` when its warning waits for the end of the cool-down.
DEFERRED_COOLDOWN = "deferred_cooldown"

#: Records the ``warning_result`` of a trigger for a warning (or its absence) (``TriggerResponder.follow_warning``).
FollowWarning = Callable[..., None]


class DeferredWarning:
    """One intrusion's deferred warning; thread-safe. :meth:`recorded` and :meth:`decided` in any order, each once
    (a second decision is ignored); the report is made once both are known."""

    def __init__(self, follow: FollowWarning) -> None:
        self._follow = follow
        self._lock = threading.Lock()
        self._seq: TriggerSeq | None = None
        self._start: WarningStart | None = None
        self._reported = False

    def recorded(self, seq: TriggerSeq) -> None:
        """The intrusion's event was committed as ``seq`` (or left in line at the stop: its seq, read late)."""
        with self._lock:
            self._seq = seq
        self._maybe_report()

    def decided(self, start: WarningStart) -> None:
        """What became of the warning: one the cool-down's end started (or ``busy``/``failed``), or a
        ``WarningStart("suppressed_cooldown")`` / ``WarningStart("suppressed_disarmed")`` when none will play."""
        with self._lock:
            if self._start is None:
                self._start = start
        self._maybe_report()

    def _maybe_report(self) -> None:
        with self._lock:
            if self._reported or self._seq is None or self._start is None:
                return
            self._reported = True
            seq, start = self._seq, self._start
        start.settled = DEFERRED_COOLDOWN  # what the intrusion's event said of it: a warning_result is owed
        self._follow(start, trigger="intrusion", trigger_seq=seq)
