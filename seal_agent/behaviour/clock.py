"""What the seal's threads run on: the real clocks (:class:`~seal_agent.interfaces.Clock`; tests give their own), the
watch on the wall clock (:class:`ClockWatch`), and the guard of a callback at the top of a foreign thread."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from seal_agent.interfaces import CLOCK_UNKNOWN, Clock, ClockState, ClockSync
from seal_agent.journal.timeline import Anchor
from seal_protocol import utc_now_ms

logger = logging.getLogger(__name__)


class SystemClock:
    """The real clocks."""

    def monotonic(self) -> float:
        return time.monotonic()

    def now(self) -> datetime:
        return datetime.now(UTC)


#: How far the wall clock may move from what the monotonic clock says between two readings (about a second apart)
#: before the seal calls it a step and records ``clock_stepped``. NTP's slewing moves it by at most 0.5 ms a second,
#: a timer thread held up moves both clocks alike: 2 s is a step (an NTP sync after boot, a person setting the time).
STEP_THRESHOLD_S = 2.0
#: A reading of the two clocks counts only if the monotonic clock moved at most this much while the wall clock was
#: read between two readings of it: a thread held up in between (a collection, swapping, another process) would
#: otherwise pass for a step, and the next check for the step back.
TIGHT_READING_S = 0.05
_READING_TRIES = 3


class ClockWatch:
    """Tells what the seal knows of its wall clock: its sync state for the heartbeat and ``agent_started``, and each
    step of it against the monotonic clock, recorded as ``clock_stepped``.

    It is the recorder's :class:`~seal_agent.journal.timeline.Timeline` (``EventRecorder.follow_clock``): every event
    taking its place in the chain reads the clocks through :meth:`place`, which compares them with the last reading,
    and the seal's timer calls ``EventRecorder.check_clock`` about once a second. A step is put in line at once, before
    the event that saw it, so every ``ts`` is in the clock the chain says is in force at its place.
    """

    def __init__(self, clock: Clock, state: ClockState | None) -> None:
        self._clock = clock
        self._state = state
        self._last = self._reading() or (clock.monotonic(), clock.now())

    def _reading(self) -> Anchor | None:
        """(monotonic, wall) read together: the wall clock read between two monotonic readings at most
        :data:`TIGHT_READING_S` apart, paired with their midpoint; None if no such reading came in a few tries."""
        for _ in range(_READING_TRIES):
            first, wall, second = self._clock.monotonic(), self._clock.now(), self._clock.monotonic()
            if second - first <= TIGHT_READING_S:
                return (first + second) / 2, wall
        return None

    def monotonic(self) -> float:
        return self._clock.monotonic()

    def sync(self) -> ClockSync:
        return CLOCK_UNKNOWN if self._state is None else self._state.sync()

    def heartbeat_fields(self) -> dict[str, Any]:
        """``clock``: ``{"synced", "max_error_ms"}``, ``null`` for what could not be read."""
        return {"clock": self.sync().payload()}

    def started(self) -> dict[str, Any]:
        """The agent starts: take the clocks' reading the next :meth:`place` compares with; the fields
        ``agent_started`` signs, ``clock`` and ``boot_id`` (``null`` if unknown)."""
        self._last = self._reading() or self._last
        return {**self.heartbeat_fields(), "boot_id": None if self._state is None else self._state.boot_id}

    def place(self) -> tuple[Anchor, dict[str, Any] | None]:
        """The clocks now, for an event taking its place in the chain (under the recorder's lock), compared with the
        last reading: on a step past :data:`STEP_THRESHOLD_S`, also the payload of its ``clock_stepped`` (``step_ms``
        positive: forward), which goes in line first. A reading held up at every try is none: the last reading's clock
        stays in force (the monotonic time since told in it), and the next one compares over the longer span."""
        reading = self._reading()
        if reading is None:
            return self._last, None
        (mono, wall), (last_mono, last_wall) = reading, self._last
        self._last = reading
        expected = last_wall + timedelta(seconds=mono - last_mono)  # the wall time had the clock not been stepped
        step = wall - expected
        if abs(step.total_seconds()) <= STEP_THRESHOLD_S:
            return reading, None
        step_ms = round(step / timedelta(milliseconds=1))
        synced = self.sync()
        logger.warning("the wall clock stepped by %+d ms (synced: %s)", step_ms, synced.synced)
        payload = {"step_ms": step_ms, "before": utc_now_ms(expected), "after": utc_now_ms(wall)}
        return reading, {**payload, "synced": synced.synced}


def ignore() -> None:
    """A callback that does nothing (a sensor's, once the seal stops)."""


def guarded(what: str, action: Callable[[], None]) -> None:
    """Run a callback body at the top of a foreign thread: log any failure with its traceback, never raise."""
    try:
        action()
    except Exception:
        logger.exception("%s handler failed", what)
