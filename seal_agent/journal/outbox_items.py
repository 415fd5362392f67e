"""What the outbox hands out (an event, a queued snapshot), and what a SQLite error committing an event means."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from seal_agent.errors import EventRefused, OutboxError

#: Builds the encoded event for a given (seq, prev_hash); runs inside the outbox transaction.
EventBuilder = Callable[[int, str | None], bytes]
#: A setting's value that names the event it is committed with: called with the event's seq, in its transaction.
SeqValue = Callable[[int], str]
#: Settings changed with an event: a value of None removes its setting.
Settings = Mapping[str, str | SeqValue | None]

#: SQLite's primary result codes of a condition of the disk or the database, not of the event being written: busy or
#: locked (another connection), out of memory, an I/O error, a full disk, an interrupt, the lock protocol, a file it
#: cannot open (a journal, out of descriptors). An event refused so is kept and tried again (:class:`OutboxError`).
PASSING_CONDITIONS = frozenset(
    {
        sqlite3.SQLITE_BUSY,
        sqlite3.SQLITE_LOCKED,
        sqlite3.SQLITE_NOMEM,
        sqlite3.SQLITE_IOERR,
        sqlite3.SQLITE_FULL,
        sqlite3.SQLITE_INTERRUPT,
        sqlite3.SQLITE_PROTOCOL,
        sqlite3.SQLITE_CANTOPEN,
    }
)


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """One committed event: its sequence number and the exact bytes that go on the wire."""

    seq: int
    data: bytes

    @property
    def key(self) -> int:
        """The delivery key (see :class:`seal_agent.journal.courier.Courier`)."""
        return self.seq


@dataclass(frozen=True, slots=True)
class QueuedSnapshot:
    """A snapshot waiting for the court's receipt: queue id (the delivery key) and SHA-256."""

    qid: int
    sha: str


@dataclass(frozen=True, slots=True)
class SnapshotItem:
    """A queued snapshot with its bytes, ready to publish; ``key`` is its queue id."""

    key: int
    sha: str
    jpeg: bytes


def _append_error(exc: sqlite3.Error, path: Path) -> OutboxError | EventRefused:
    """What a SQLite error committing one event means: a passing condition (:data:`PASSING_CONDITIONS`, kept and
    tried again) or a refusal of this event (``SQLITE_TOOBIG``, a constraint, and anything else, even without a
    code) that its next try would meet again. Whether such a refusal is really the event's own, and not the
    database's, the recorder finds out by committing a small event in its place."""
    code: int | None = getattr(exc, "sqlite_errorcode", None)
    if code is not None and code & 0xFF in PASSING_CONDITIONS:
        return OutboxError(f"cannot commit event to {path}: {exc}")
    return EventRefused(str(exc), getattr(exc, "sqlite_errorname", None) or type(exc).__name__)
