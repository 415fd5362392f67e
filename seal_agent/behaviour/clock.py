"""What the seal's threads run on: the real clocks (:class:`~seal_agent.interfaces.Clock`; tests give their own), the
watch on the wall clock (:class:`ClockWatch`), and the guard of a callback at the top of a foreign thread."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from seal_agent.interfaces import CLOCK_UNKNOWN, Clock, ClockState, ClockSync
from seal_protocol import EventType, utc_now_ms

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
    step of it against the monotonic clock, recorded as ``clock_stepped`` (call :meth:`check` on the timer thread).

    ``record(type, payload)`` commits an event (the recorder's ``record_or_hold``: a step is never dropped).
    """

    def __init__(
        self, clock: Clock, state: ClockState | None, record: Callable[[EventType, Mapping[str, Any]], object]
    ) -> None:
        self._clock = clock
        self._state = state
        self._record = record
        self._last = self._reading() or (clock.monotonic(), clock.now())

    def _reading(self) -> tuple[float, datetime] | None:
        """(monotonic, wall) read together: the wall clock read between two monotonic readings at most
        :data:`TIGHT_READING_S` apart, paired with their midpoint; None if no such reading came in a few tries."""
        for _ in range(_READING_TRIES):
            first, wall, second = self._clock.monotonic(), self._clock.now(), self._clock.monotonic()
            if second - first <= TIGHT_READING_S:
                return (first + second) / 2, wall
        return None

    def sync(self) -> ClockSync:
        return CLOCK_UNKNOWN if self._state is None else self._state.sync()

    def heartbeat_fields(self) -> dict[str, Any]:
        """``clock``: ``{"synced", "max_error_ms"}``, ``null`` for what could not be read."""
        return {"clock": self.sync().payload()}

    def started(self) -> dict[str, Any]:
        """The agent starts: take the clocks' reading the next :meth:`check` compares with; the fields
        ``agent_started`` signs, ``clock`` and ``boot_id`` (``null`` if unknown)."""
        self._last = self._reading() or self._last
        return {**self.heartbeat_fields(), "boot_id": None if self._state is None else self._state.boot_id}

    def check(self) -> None:
        """Compare the wall clock with the monotonic clock since the last check; on a step past
        :data:`STEP_THRESHOLD_S`, record ``clock_stepped`` (``step_ms`` positive: forward)."""
        reading = self._reading()
        if reading is None:  # held up at every try: compared at the next check, over the longer span
            return
        (mono, wall), (last_mono, last_wall) = reading, self._last
        self._last = reading
        expected = last_wall + timedelta(seconds=mono - last_mono)  # the wall time had the clock not been stepped
        step = wall - expected
        if abs(step.total_seconds()) <= STEP_THRESHOLD_S:
            return
        step_ms = round(step / timedelta(milliseconds=1))
        synced = self.sync()
        logger.warning("the wall clock stepped by %+d ms (synced: %s)", step_ms, synced.synced)
        payload = {"step_ms": step_ms, "before": utc_now_ms(expected), "after": utc_now_ms(wall)}
        self._record(EventType.CLOCK_STEPPED, {**payload, "synced": synced.synced})


def ignore() -> None:
    """A callback that does nothing (a sensor's, once the seal stops)."""


def guarded(what: str, action: Callable[[], None]) -> None:
    """Run a callback body at the top of a foreign thread: log any failure with its traceback, never raise."""
    try:
        action()
    except Exception:
        logger.exception("%s handler failed", what)
