"""The real clocks a seal runs on (:class:`~seal_agent.interfaces.Clock`); tests give their own."""

from __future__ import annotations

import time
from datetime import UTC, datetime


class SystemClock:
    """The real clocks."""

    def monotonic(self) -> float:
        return time.monotonic()

    def now(self) -> datetime:
        return datetime.now(UTC)
