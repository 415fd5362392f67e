"""What the seal's threads run on: the real clocks (:class:`~seal_agent.interfaces.Clock`; tests give their own), and
the guard of a callback at the top of a foreign thread."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime

logger = logging.getLogger(__name__)


class SystemClock:
    """The real clocks."""

    def monotonic(self) -> float:
        return time.monotonic()

    def now(self) -> datetime:
        return datetime.now(UTC)


def ignore() -> None:
    """A callback that does nothing (a sensor's, once the seal stops)."""


def guarded(what: str, action: Callable[[], None]) -> None:
    """Run a callback body at the top of a foreign thread: log any failure with its traceback, never raise."""
    try:
        action()
    except Exception:
        logger.exception("%s handler failed", what)
