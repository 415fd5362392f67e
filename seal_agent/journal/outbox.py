"""The durable on-device outbox: every event is committed here before it is sent, and deleted only when the court's
signed receipt names it.

The broker's PUBACK only says that the broker took a message; a broker that loses its store (killed before it saved
it) would lose it with it. So an event stays in the outbox after its PUBACK, marked broker-acknowledged, until a
verified receipt from the court lists the SHA-256 of its exact bytes (:mod:`seal_protocol.receipts`); everything
not receipted is sent again after a reconnect (:mod:`seal_agent.journal.courier`).

Snapshots go the same way: a snapshot's hash is queued here (its bytes live in the content-addressed snapshot store),
marked broker-acknowledged on its PUBACK, and leaves the queue only when a receipt names it; it is then recorded as
receipted (the court holds it, so its file may be thinned first).

One SQLite file (WAL, ``synchronous=FULL``) holds the exact encoded bytes of each event not yet receipted, and, in the
same transaction, the last sequence number and the hash of the last event. A crash therefore never reuses a ``seq``
and never breaks the hash chain: after a restart the next event continues where the last committed one ended.

The schema and its migrations from older files are in :mod:`seal_agent.journal.outbox_schema`.

Only one process may use an outbox at a time; a lock file next to the database enforces that.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import Any

from seal_agent.errors import OutboxError, OutboxLocked, OutboxMissing, outbox_open_error
from seal_agent.journal.disk_room import give_back_wal
from seal_agent.journal.outbox_items import (  # noqa: F401  (their home for the callers)
    PASSING_CONDITIONS,
    EventBuilder,
    QueuedSnapshot,
    SeqValue,
    Settings,
    SnapshotItem,
    StoredEvent,
    _append_error,
)
from seal_agent.journal.outbox_place import file_ids, lock_process, moved, restore
from seal_agent.journal.outbox_salvage import DAMAGE_PREFIX, Known, check, is_damage, salvage
from seal_agent.journal.outbox_schema import migrate
from seal_agent.journal.outbox_snapshots import SnapshotQueue
from seal_protocol import envelope_hash

logger = logging.getLogger(__name__)

#: A file found damaged again this soon after a repair is not repaired again (an OutboxError: tried again later).
_REPAIR_INTERVAL_S = 60.0
#: The end of the ``meta`` keys of damage notes.
DAMAGE_END = DAMAGE_PREFIX[:-1] + chr(ord(DAMAGE_PREFIX[-1]) + 1)


class Outbox(SnapshotQueue):
    """A thread-safe, durable queue of encoded events in ``seq`` order.

    ``append`` assigns the next ``seq`` and ``prev_hash`` and commits; ``pending`` lists what the court has not
    receipted; ``broker_acknowledged`` marks events the broker took; ``court_receipted`` deletes the events a
    verified receipt names. Small persistent settings (e.g. whether the seal is armed) live in the same database so
    they can change in the same transaction as an event.
    """

    def __init__(self, path: Path, *, create: bool = True) -> None:
        """Open the outbox at ``path``; a missing or empty file is a new outbox if ``create``, else
        :class:`~seal_agent.errors.OutboxMissing` (as is a file that holds no outbox tables)."""
        self.path = path
        self._lock = threading.RLock()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._lock_fd = lock_process(path.with_name(path.name + ".lock"))
        except OutboxLocked:
            raise
        except OSError as exc:
            raise outbox_open_error(path, exc) from exc
        try:
            if not create and (not path.exists() or path.stat().st_size == 0):
                raise OutboxMissing(f"{path} is {'empty' if path.exists() else 'missing'}")
            os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))  # SQLite gives -wal/-shm the same mode
            found = self._connect_checked()
            if found is not None:  # rebuilt from the rows that can be read; the damaged file is kept aside
                self._db.close()
                salvage(path, found)
                self._connect()
            migrate(self._db, path, create=create)
        except (sqlite3.Error, OSError, OutboxError) as exc:
            if hasattr(self, "_db"):
                self._db.close()
            os.close(self._lock_fd)
            if isinstance(exc, OutboxError):
                raise  # already says what is wrong with the file
            raise outbox_open_error(path, exc) from exc
        self._closed = False
        self._remember()
        #: Repairs of a damaged file by this process, plus one if a note of an earlier one waits to be signed: the
        #: recorder reads :meth:`damage_notes` when it changes.
        self.damage_seen = 1 if self.damage_notes() else 0
        self._repaired_at: float | None = None
        self._restore_failed_at: float | None = None

    def _remember(self) -> None:
        """Note what the file holds now (``_lock`` held or not yet shared): where its files are
        (:meth:`_check_place`), its ``meta`` and the seqs of the events it holds, not yet receipted (for
        :func:`salvage`, should the file lose them: kept in step with every commit and every receipt)."""
        self._ids = file_ids(self.path)
        self._meta = {str(k): str(v) for k, v in self._db.execute("SELECT key, value FROM meta")}
        self._unreceipted = {int(seq) for (seq,) in self._db.execute("SELECT seq FROM outbox")}

    def repairs(self) -> int:
        """:attr:`damage_seen`, once the outbox file is checked to be still in its place (:meth:`_check_place`;
        the seal's timer calls this about once a second, through the recorder)."""
        with self._lock:
            if not self._closed:
                self._check_place()
            return self.damage_seen

    def _check_place(self) -> None:
        """If the path no longer names the open files (deleted, moved, replaced), write the open database back to it
        (:func:`~seal_agent.journal.outbox_place.restore`; ``_lock`` held). If that fails, the commits go on into the
        open files (nothing is refused for it) and it is tried again a minute later."""
        gone = moved(self.path, self._ids)
        now = time.monotonic()
        if gone is None or (self._restore_failed_at is not None and now - self._restore_failed_at < _REPAIR_INTERVAL_S):
            return
        try:
            restore(self._db, self.path, self._ids, *gone)
        except (sqlite3.Error, OSError):
            self._restore_failed_at = now
            logger.exception("outbox %s: %s; cannot write it back (tried again in a minute)", self.path, gone[1])
            return
        self._connect()
        self._remember()
        self.damage_seen += 1

    def _connect_checked(self) -> str | None:
        """:meth:`_connect` and :func:`check`: None if the file is sound, else the damage found. A file cut short
        (a torn card, fsck) is refused already by the pragmas of :meth:`_connect`, which read its schema: that is
        damage found too, for :func:`salvage`, never a refusal to start."""
        try:
            self._connect()
            return check(self._db)
        except sqlite3.DatabaseError as exc:
            if not is_damage(exc):
                raise
            self._db.close()
            return str(exc)

    def _connect(self) -> None:
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=5.0)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")

    def _repair(self, exc: sqlite3.Error) -> None:
        """The file turned out damaged while in use (``_lock`` held): rebuild it from the rows that can be read
        (:func:`~seal_agent.journal.outbox_salvage.salvage`), at most once a minute (damage met again so soon is
        an OutboxError: the caller tries again later, never in a hot loop)."""
        now = time.monotonic()
        if self._repaired_at is not None and now - self._repaired_at < _REPAIR_INTERVAL_S:
            raise OutboxError(f"outbox {self.path} is damaged again ({exc}); repaired less than a minute ago") from exc
        self._repaired_at = now
        self._db.close()
        try:
            salvage(self.path, str(exc), Known(dict(self._meta), frozenset(self._unreceipted)))
        except (sqlite3.Error, OSError) as failed:
            raise OutboxError(f"outbox {self.path} is damaged ({exc}) and cannot be repaired: {failed}") from failed
        finally:
            self._connect()
        self._remember()
        self.damage_seen += 1

    def damage_notes(self) -> dict[str, str]:
        """The notes of repairs not yet signed (``meta`` key: JSON note; :mod:`~seal_agent.journal.outbox_salvage`)."""
        with self._lock:
            rows = self._query("SELECT key, value FROM meta WHERE key >= ? AND key < ?", (DAMAGE_PREFIX, DAMAGE_END))
        return {str(key): str(value) for key, value in rows if value}

    def give_back_log(self) -> bool:
        """Room made on a full disk (a thinning): checkpoint the write-ahead log and truncate it, so that the log does
        not take that room back (:func:`~seal_agent.journal.disk_room.give_back_wal`); whether it gave any back."""
        with self._lock:
            return give_back_wal(self._db, self.path, None)

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

    def append(self, build: EventBuilder, *, settings: Settings | None = None) -> StoredEvent:
        """Commit the next event: ``build(seq, prev_hash)`` gives its bytes; ``settings`` change atomically with it
        (None: removed; a :data:`SeqValue` is called with the event's seq).

        If ``build`` raises, nothing is committed and the sequence number is not consumed. A SQLite error raises
        :class:`OutboxError` for a passing condition of the disk or the database (:data:`PASSING_CONDITIONS`: try
        again), :class:`~seal_agent.errors.EventRefused` for any other (this event's next try would meet it too).
        """
        with self._lock:
            self._check_place()
            try:
                return self._append(build, settings)
            except sqlite3.Error as exc:
                if is_damage(exc):
                    self._repair(exc)  # the file's damage, never the event's: rebuilt, and the event committed to it
                elif not give_back_wal(self._db, self.path, exc):  # a full disk: the log's room, tried once more
                    raise _append_error(exc, self.path) from exc
            try:
                return self._append(build, settings)
            except sqlite3.Error as exc:
                error = OutboxError(f"cannot commit event to {self.path}: {exc}") if is_damage(exc) else None
                raise error or _append_error(exc, self.path) from exc

    def _append(self, build: EventBuilder, settings: Settings | None) -> StoredEvent:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            seq = int(self._get("last_seq") or 0) + 1
            data = build(seq, self._get("last_hash"))
            sha = envelope_hash(data)
            self._db.execute(
                "INSERT INTO outbox (seq, data, sha, created_at) VALUES (?, ?, ?, ?)",
                (seq, data, sha, time.time()),
            )
            self._set("last_seq", str(seq))
            self._set("last_hash", sha)
            values = {key: value(seq) if callable(value) else value for key, value in (settings or {}).items()}
            for key, value in values.items():
                if value is None:
                    self._db.execute("DELETE FROM meta WHERE key = ?", (key,))
                else:
                    self._set(key, value)
            self._db.execute("COMMIT")
        except BaseException:
            # SQLite may have rolled back already (a full disk, an I/O error): a ROLLBACK would then fail,
            # and its error would hide the one that says what happened.
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise
        self._meta |= {"last_seq": str(seq), "last_hash": sha}
        for key, value in values.items():
            self._note_setting(key, value)
        self._unreceipted.add(seq)
        return StoredEvent(seq, data)

    def pending(self, *, after: int = 0, limit: int = 100) -> list[StoredEvent]:
        """Events the court has not receipted with ``seq > after``, oldest first (broker-acknowledged ones too)."""
        with self._lock:
            rows = self._query("SELECT seq, data FROM outbox WHERE seq > ? ORDER BY seq LIMIT ?", (after, limit))
        return [StoredEvent(int(seq), bytes(data)) for seq, data in rows]

    def broker_acknowledged(self, seqs: Collection[int]) -> None:
        """Mark events the broker acknowledged (PUBACK with a success code); they stay until the court's receipt."""
        if seqs:
            with self._write("mark events broker-acknowledged") as db:
                db.executemany(
                    "UPDATE outbox SET acked_at = ? WHERE seq = ? AND acked_at IS NULL",
                    [(time.time(), seq) for seq in seqs],
                )

    def court_receipted(self, hashes: Collection[str]) -> list[int]:
        """Delete the events whose SHA-256 a verified court receipt names; their seqs, in order."""
        if not hashes:
            return []
        with self._lock:
            with self._write("delete receipted events") as db:
                seqs = sorted(
                    seq for sha in hashes for (seq,) in db.execute("SELECT seq FROM outbox WHERE sha = ?", (sha,))
                )
                db.executemany("DELETE FROM outbox WHERE seq = ?", [(seq,) for seq in seqs])
            self._unreceipted.difference_update(seqs)  # committed (an error leaves them held: rolled back)
        return [int(seq) for seq in seqs]

    def depth(self) -> int:
        """How many events wait for the court's receipt."""
        with self._lock:
            return int(self._query("SELECT COUNT(*) FROM outbox", ())[0][0])

    def unacknowledged_depth(self) -> int:
        """How many of them the broker has not acknowledged either."""
        with self._lock:
            return int(self._query("SELECT COUNT(*) FROM outbox WHERE acked_at IS NULL", ())[0][0])

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

    def lower_limits(self, *, value_bytes: int | None = None, pages: int | None = None) -> None:
        """Lower SQLite's own limits on this outbox's connection: the longest value it stores (``value_bytes``,
        ``SQLITE_LIMIT_LENGTH``: a longer event is refused with ``SQLITE_TOOBIG``) and the size of the database
        (``pages``, ``max_page_count``: a write that needs more fails as on a full disk, ``SQLITE_FULL``). For drills
        and tests, which meet these refusals for real."""
        with self._lock:
            if value_bytes is not None:
                self._db.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, value_bytes)
            if pages is not None:
                self._db.execute(f"PRAGMA max_page_count = {int(pages)}")

    # -- settings ---------------------------------------------------------------------------------------------

    def setting(self, key: str) -> str | None:
        with self._lock:
            return self._read_meta(key)

    def settings_named(self, prefix: str) -> dict[str, str]:
        """The settings whose key begins with ``prefix``."""
        with self._lock:
            rows = self._query("SELECT key, value FROM meta WHERE substr(key, 1, ?) = ?", (len(prefix), prefix))
        return {str(key): str(value) for key, value in rows}

    def unset_setting(self, key: str) -> None:
        with self._lock:
            with self._write(f"remove setting {key!r}") as db:
                db.execute("DELETE FROM meta WHERE key = ?", (key,))
            self._note_setting(key, None)

    def set_setting(self, key: str, value: str) -> None:
        with self._lock:
            try:
                self._set(key, value)
            except sqlite3.Error as exc:
                raise OutboxError(f"cannot store setting {key!r} in {self.path}: {exc}") from exc
            self._note_setting(key, value)

    def _note_setting(self, key: str, value: str | None) -> None:
        """Remember a committed change of ``meta`` (:meth:`_remember`)."""
        if value is None:
            self._meta.pop(key, None)
        else:
            self._meta[key] = value

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
                    if self._db.in_transaction:  # see append
                        self._db.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:
                if is_damage(exc):
                    self._repair(exc)  # the caller tries again later, on the repaired file
                give_back_wal(self._db, self.path, exc)  # a full disk: the next try has the log's room
                raise OutboxError(f"cannot {what} in {self.path}: {exc}") from exc

    def _query(self, sql: str, args: tuple[object, ...]) -> list[Any]:
        """A read (``_lock`` held); a damaged file is repaired and read again."""
        try:
            return self._db.execute(sql, args).fetchall()
        except sqlite3.Error as exc:
            if not is_damage(exc):
                raise OutboxError(f"cannot read outbox {self.path}: {exc}") from exc
            self._repair(exc)
        try:
            return self._db.execute(sql, args).fetchall()
        except sqlite3.Error as exc:
            raise OutboxError(f"cannot read outbox {self.path}: {exc}") from exc

    def _read_meta(self, key: str) -> str | None:
        """:meth:`_get` outside a transaction: a SQLite error becomes :class:`OutboxError` (see :meth:`_query`)."""
        rows = self._query("SELECT value FROM meta WHERE key = ?", (key,))
        return None if not rows else str(rows[0][0])

    def _get(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def _set(self, key: str, value: str) -> None:
        self._db.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (key, value),
        )
