"""An event's place in the recorder's line (:mod:`seal_agent.journal.recorder`): committed, lost, given up, or held
until the outbox takes it."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

from seal_agent.errors import OutboxError
from seal_agent.journal.outbox import Settings, StoredEvent
from seal_agent.journal.timeline import Anchor, told
from seal_protocol import EventType

#: Fields of an event read only when it is committed, after the held events before it (its ``outbox_depth``).
LateFields = Callable[[], Mapping[str, Any]]


class Turn:
    """One event's place in the recorder's line: committed (:meth:`result` is its stored event), lost (its
    ``event_lost`` stands in its place: :class:`~seal_agent.errors.EventLost`), given up at the stop
    (:class:`~seal_agent.errors.OutboxError`, logged CRITICAL), or held until the outbox takes it. Thread-safe."""

    def __init__(
        self,
        type: EventType,
        body: Mapping[str, Any],
        moment: float,
        anchor: Anchor,
        late: LateFields | None = None,
        settings: Settings | None = None,
    ) -> None:
        self.type = type
        self.settings = settings  # stored in the transaction that commits the event, also when it was held
        self._anchor = anchor  # the clocks when it took its place in the line: its ts is told in that wall clock
        self.at = self.wall_of(moment)
        self.body: dict[str, Any] = told(dict(body), self.wall_of)
        self.late = late
        self._cond = threading.Condition()
        self._stored: StoredEvent | None = None
        self._error: Exception | None = None
        self._interrupted = False

    def wall_of(self, mono: float) -> datetime:
        """The monotonic time ``mono`` in the wall clock in force at this event's place in the chain."""
        anchor_mono, anchor_wall = self._anchor
        return anchor_wall - timedelta(seconds=anchor_mono - mono)

    @property
    def settled(self) -> bool:
        with self._cond:
            return self._stored is not None or self._error is not None

    def wait(self, timeout: float) -> bool:
        """Wait until the event is settled (True), or ``timeout`` s pass or :meth:`interrupt` is called (False)."""
        with self._cond:
            self._cond.wait_for(
                lambda: self._interrupted or self._stored is not None or self._error is not None, timeout
            )
            return self._stored is not None or self._error is not None

    def interrupt(self) -> None:
        """Wake every :meth:`wait` now and from now on (its waiter stops); the event stays in line."""
        with self._cond:
            self._interrupted = True
            self._cond.notify_all()

    def result(self) -> StoredEvent:
        """The committed event; raises EventLost (an event_lost stands in its place) or OutboxError (not committed:
        still held, or given up)."""
        with self._cond:
            if self._stored is not None:
                return self._stored
            if self._error is not None:
                raise self._error
        raise OutboxError(f"{self.type.value} of {self.at} is not committed yet: it waits in line for the outbox")

    def _settle(self, stored: StoredEvent | None = None, error: Exception | None = None) -> None:
        with self._cond:
            self._stored, self._error = stored, error
            self._cond.notify_all()
