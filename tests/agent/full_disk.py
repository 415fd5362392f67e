"""A full disk for an outbox, for real: SQLite itself answers ``SQLITE_FULL``.

The outbox's connection may not grow the database past its present size (``max_page_count``, through
:meth:`~seal_agent.journal.outbox.Outbox.lower_limits`), and the seal's smallest events (a heartbeat with an empty
payload) are committed until the last page has no room for another: every event is at least as big, and each new
one goes to that last page (``seq`` only grows), so every commit then meets ``SQLITE_FULL``. The court's receipt
for those events makes room again, as it does on a seal.
"""

from __future__ import annotations

import logging
import sqlite3
import threading

from seal_agent.errors import EventRefused, OutboxError
from seal_agent.journal.recorder import EventRecorder
from seal_protocol import EventType, envelope_hash


class FullDisk:
    """:meth:`fill` the outbox of ``recorder`` to its size; :meth:`make_room` deletes the events that filled it, as a
    verified receipt from the court does (a running seal's court must not receipt them before: ``receipting``)."""

    def __init__(self, recorder: EventRecorder) -> None:
        self._recorder = recorder
        self.fillers: list[str] = []

    def fill(self) -> None:
        """From now on, every event the outbox commits meets ``SQLITE_FULL`` (until :meth:`make_room`)."""
        outbox = self._recorder.outbox
        with sqlite3.connect(outbox.path) as db:
            pages = int(db.execute("PRAGMA page_count").fetchone()[0])
        outbox.lower_limits(pages=pages)
        try:
            for _ in range(1000):
                self.fillers.append(envelope_hash(self._recorder.record(EventType.HEARTBEAT, {}).data))
        except OutboxError as exc:
            assert not isinstance(exc, EventRefused)
            assert exc.__cause__ is not None and exc.__cause__.sqlite_errorname == "SQLITE_FULL", exc  # type: ignore[attr-defined]
        else:
            raise AssertionError("the outbox did not fill up")

    def make_room(self) -> None:
        """The court receipted the events that filled the disk: the seal deletes them, and there is room."""
        assert len(self._recorder.outbox.court_receipted(self.fillers)) == len(self.fillers)

    def make_plenty_of_room(self) -> None:
        """As :meth:`make_room`, and the outbox may grow again: room for more events than the fillers took."""
        self.make_room()
        self._recorder.outbox.lower_limits(pages=1 << 30)


class OutboxFailures(logging.Handler):
    """Counts the agent's log records that carry an :class:`OutboxError`, and wakes :meth:`wait` on each."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0
        self._cond = threading.Condition()

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info is not None and isinstance(record.exc_info[1], OutboxError):
            with self._cond:
                self.count += 1
                self._cond.notify_all()

    def wait(self, count: int, timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self.count >= count, timeout)
