"""The durable on-device outbox: every event is committed here before it is sent, and deleted only after PUBACK.

Snapshots go the same way: a snapshot's hash is queued here (its bytes live in the content-addressed snapshot store)
and is deleted from the queue only after the broker acknowledged the snapshot's publish.

One SQLite file (WAL, ``synchronous=FULL``) holds the exact encoded bytes of each pending event, and, in the same
transaction, the last sequence number and the hash of the last event. A crash therefore never reuses a ``seq`` and
never breaks the hash chain: after a restart the next event continues where the last committed one ended.

Only one process may use an outbox at a time; a lock file next to the database enforces that.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from seal_agent.errors import OutboxError, OutboxLocked
from seal_protocol import envelope_hash

logger = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY,
    data BLOB NOT NULL,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS snapshot_queue (
    qid INTEGER PRIMARY KEY AUTOINCREMENT,
    sha TEXT NOT NULL UNIQUE,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS snapshot_sent (
    sha TEXT PRIMARY KEY
);
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""
_SCHEMA_VERSION = 1

#: Builds the encoded event for a given (seq, prev_hash); runs inside the outbox transaction.
EventBuilder = Callable[[int, str | None], bytes]


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """One committed event: its sequence number and the exact bytes that go on the wire."""

    seq: int
    data: bytes

    @property
    def key(self) -> int:
        """The delivery key (see :class:`seal_agent.delivery.Courier`)."""
        return self.seq


@dataclass(frozen=True, slots=True)
class QueuedSnapshot:
    """A snapshot waiting for its PUBACK: queue id (the delivery key) and SHA-256."""

    qid: int
    sha: str


@dataclass(frozen=True, slots=True)
class SnapshotItem:
    """A queued snapshot with its bytes, ready to publish; ``key`` is its queue id."""

    key: int
    sha: str
    jpeg: bytes


class Outbox:
    """A thread-safe, durable queue of encoded events in ``seq`` order.

    ``append`` assigns the next ``seq`` and ``prev_hash`` and commits; ``pending`` lists what is not yet
    acknowledged; ``ack`` deletes an event after the broker's PUBACK. Small persistent settings (e.g. whether the
    seal is armed) live in the same database so they can change in the same transaction as an event.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock_fd = self._acquire_process_lock(path.with_name(path.name + ".lock"))
        try:
            os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))  # SQLite gives -wal/-shm the same mode
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=5.0)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
            self._db.execute(f"PRAGMA user_version={_SCHEMA_VERSION}")
        except (sqlite3.Error, OSError) as exc:
            os.close(self._lock_fd)
            raise OutboxError(f"cannot open outbox {path}: {exc}") from exc
        self._closed = False

    @staticmethod
    def _acquire_process_lock(lock_path: Path) -> int:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise OutboxLocked(f"{lock_path}: another seal agent uses this state_dir") from None
        return fd

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._db.close()
            os.close(self._lock_fd)

    def __enter__(self) -> Outbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def append(self, build: EventBuilder, *, settings: Mapping[str, str] | None = None) -> StoredEvent:
        """Commit the next event: ``build(seq, prev_hash)`` gives its bytes; ``settings`` change atomically with it.

        If ``build`` raises, nothing is committed and the sequence number is not consumed.
        """
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    seq = int(self._get("last_seq") or 0) + 1
                    data = build(seq, self._get("last_hash"))
                    self._db.execute(
                        "INSERT INTO outbox (seq, data, created_at) VALUES (?, ?, ?)", (seq, data, time.time())
                    )
                    self._set("last_seq", str(seq))
                    self._set("last_hash", envelope_hash(data))
                    for key, value in (settings or {}).items():
                        self._set(key, value)
                    self._db.execute("COMMIT")
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:
                raise OutboxError(f"cannot commit event to {self.path}: {exc}") from exc
        return StoredEvent(seq, data)

    def pending(self, *, after: int = 0, limit: int = 100) -> list[StoredEvent]:
        """Unacknowledged events with ``seq > after``, oldest first."""
        with self._lock:
            rows = self._query("SELECT seq, data FROM outbox WHERE seq > ? ORDER BY seq LIMIT ?", (after, limit))
        return [StoredEvent(int(seq), bytes(data)) for seq, data in rows]

    def ack(self, seq: int) -> bool:
        """Delete the event ``seq`` after its PUBACK; False if it was already gone."""
        with self._lock:
            try:
                cursor = self._db.execute("DELETE FROM outbox WHERE seq = ?", (seq,))
            except sqlite3.Error as exc:
                raise OutboxError(f"cannot delete event {seq} from {self.path}: {exc}") from exc
        return cursor.rowcount > 0

    def depth(self) -> int:
        """How many events wait for their PUBACK."""
        with self._lock:
            return int(self._query("SELECT COUNT(*) FROM outbox", ())[0][0])

    @property
    def last_seq(self) -> int:
        """The seq of the last committed event (0 before the first)."""
        with self._lock:
            return int(self._read_meta("last_seq") or 0)

    @property
    def last_hash(self) -> str | None:
        """``envelope_hash`` of the last committed event's bytes: the next event's ``prev_hash``."""
        with self._lock:
            return self._read_meta("last_hash")

    # -- snapshot queue -----------------------------------------------------------------------------------------

    def queue_snapshot(self, sha: str) -> int:
        """Queue the stored snapshot ``sha`` for sending (committed); returns its queue id. Idempotent per hash."""
        with self._lock:
            try:
                self._db.execute(
                    "INSERT OR IGNORE INTO snapshot_queue (sha, created_at) VALUES (?, ?)", (sha, time.time())
                )
                row = self._db.execute("SELECT qid FROM snapshot_queue WHERE sha = ?", (sha,)).fetchone()
            except sqlite3.Error as exc:
                raise OutboxError(f"cannot queue snapshot {sha} in {self.path}: {exc}") from exc
        return int(row[0])

    def pending_snapshots(self, *, after: int = 0, limit: int = 100) -> list[QueuedSnapshot]:
        """Snapshots not yet acknowledged with ``qid > after``, oldest first."""
        with self._lock:
            rows = self._query(
                "SELECT qid, sha FROM snapshot_queue WHERE qid > ? ORDER BY qid LIMIT ?", (after, limit)
            )
        return [QueuedSnapshot(int(qid), str(sha)) for qid, sha in rows]

    def ack_snapshot(self, qid: int) -> bool:
        """The broker acknowledged the snapshot ``qid``: it leaves the queue and is recorded as sent (one
        transaction); False if it was no longer queued."""
        with self._write(f"acknowledge snapshot {qid}") as db:
            row = db.execute("SELECT sha FROM snapshot_queue WHERE qid = ?", (qid,)).fetchone()
            if row is not None:
                db.execute("DELETE FROM snapshot_queue WHERE qid = ?", (qid,))
                db.execute("INSERT OR IGNORE INTO snapshot_sent (sha) VALUES (?)", (row[0],))
        return row is not None

    def mark_snapshots_sent(self, shas: list[str]) -> None:
        """Record stored snapshots as sent without a queue entry (stores kept before sent ones were recorded)."""
        with self._write("record sent snapshots") as db:
            db.executemany("INSERT OR IGNORE INTO snapshot_sent (sha) VALUES (?)", [(sha,) for sha in shas])

    def forget_snapshots(self, shas: list[str]) -> int:
        """Forget snapshots whose files are gone (thinned): queued or sent; returns how many were still queued."""
        with self._write("forget snapshots") as db:
            queued = sum(db.execute("DELETE FROM snapshot_queue WHERE sha = ?", (sha,)).rowcount for sha in shas)
            db.executemany("DELETE FROM snapshot_sent WHERE sha = ?", [(sha,) for sha in shas])
        return queued

    def was_sent(self, sha: str) -> bool:
        """Whether the broker acknowledged the stored snapshot ``sha``."""
        with self._lock:
            return bool(self._query("SELECT 1 FROM snapshot_sent WHERE sha = ?", (sha,)))

    def sent_snapshots(self) -> set[str]:
        """Hashes of the stored snapshots the broker acknowledged."""
        with self._lock:
            return {str(sha) for (sha,) in self._query("SELECT sha FROM snapshot_sent", ())}

    def unsent_snapshots(self) -> set[str]:
        """Hashes of the snapshots still waiting for their PUBACK."""
        with self._lock:
            return {str(sha) for (sha,) in self._query("SELECT sha FROM snapshot_queue", ())}

    def snapshot_depth(self) -> int:
        """How many snapshots wait for their PUBACK."""
        with self._lock:
            return int(self._query("SELECT COUNT(*) FROM snapshot_queue", ())[0][0])

    # -- settings ---------------------------------------------------------------------------------------------

    def setting(self, key: str) -> str | None:
        with self._lock:
            return self._read_meta(key)

    def set_setting(self, key: str, value: str) -> None:
        with self._lock:
            try:
                self._set(key, value)
            except sqlite3.Error as exc:
                raise OutboxError(f"cannot store setting {key!r} in {self.path}: {exc}") from exc

    @contextlib.contextmanager
    def _write(self, what: str) -> Iterator[sqlite3.Connection]:
        """One write transaction under the lock; a SQLite error becomes :class:`OutboxError`."""
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    yield self._db
                    self._db.execute("COMMIT")
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:
                raise OutboxError(f"cannot {what} in {self.path}: {exc}") from exc

    def _query(self, sql: str, args: tuple[object, ...]) -> list[Any]:
        try:
            return self._db.execute(sql, args).fetchall()
        except sqlite3.Error as exc:
            raise OutboxError(f"cannot read outbox {self.path}: {exc}") from exc

    def _read_meta(self, key: str) -> str | None:
        """:meth:`_get` outside a transaction: a SQLite error becomes :class:`OutboxError`."""
        try:
            return self._get(key)
        except sqlite3.Error as exc:
            raise OutboxError(f"cannot read {key!r} from outbox {self.path}: {exc}") from exc

    def _get(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def _set(self, key: str, value: str) -> None:
        self._db.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (key, value),
        )
