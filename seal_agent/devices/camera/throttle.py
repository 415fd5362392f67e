"""A warning that can repeat at the camera's frame rate, logged at most once per interval with an exact count."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable


class ThrottledWarning:
    """One kind of repeated warning (e.g. "this frame cannot be analysed").

    The first occurrence is logged at once. Later ones are counted, and at most one line per ``interval_s`` says how
    many there were since the previous line (with the newest one's details): on the next occurrence once the
    interval is over, on :meth:`tick` (call it often, e.g. per observation) or on :meth:`flush` (call it when the
    source stops). The counts of all lines add up to :attr:`total`. Thread-safe.
    """

    def __init__(self, logger: logging.Logger, message: str, interval_s: float, clock: Callable[[], float]) -> None:
        if interval_s <= 0:
            raise ValueError("interval_s must be positive")
        self.logger = logger
        self.message = message
        self.interval_s = interval_s
        self.total = 0
        self._clock = clock
        self._lock = threading.Lock()
        self._pending = 0  # occurrences not yet in a line
        self._args: tuple[object, ...] = ()
        self._logged_at: float | None = None

    def note(self, *args: object) -> None:
        """One occurrence; ``args`` fill the message's ``%`` placeholders."""
        now = self._clock()
        with self._lock:
            self.total += 1
            self._pending += 1
            self._args = args
            if self._logged_at is None or now - self._logged_at >= self.interval_s:
                self._emit(now)

    def tick(self) -> None:
        """Log the count of the occurrences held back, if the interval since the last line is over."""
        now = self._clock()
        with self._lock:
            if self._pending and self._logged_at is not None and now - self._logged_at >= self.interval_s:
                self._emit(now)

    def flush(self) -> None:
        """Log the count of the occurrences held back, whatever the time."""
        now = self._clock()
        with self._lock:
            if self._pending:
                self._emit(now)

    def _emit(self, now: float) -> None:
        if self._pending == 1 or self._logged_at is None:  # the first, or a lone one after a quiet interval
            self.logger.warning(self.message, *self._args)
        else:
            self.logger.warning(
                self.message + " (%d times in the last %.1f s; the newest shown)",
                *self._args, self._pending, now - self._logged_at,
            )  # fmt: skip
        self._pending = 0
        self._logged_at = now
