"""A damaged outbox file (a torn write, a failing SD card) costs the rows that cannot be read, never the others.

SQLite notices a damaged page only when it reads it: the file opens, and every later read that meets the page fails
(``SQLITE_CORRUPT``, "database disk image is malformed"). Left as it is, one such page would stop every read that
crosses it: the courier's ``ORDER BY seq`` batch, a receipt's deletes, a commit. So the outbox is checked when it is
opened (``PRAGMA quick_check``), and any read or write that meets damage later repairs it on the spot
(:meth:`~seal_agent.journal.outbox.Outbox`): :func:`salvage` builds a fresh file of the rows that can still be read,
row by row in key order, stepping past the keys whose rows cannot be read, keeps the chain's place (``last_seq``,
``last_hash``) and the settings, keeps the damaged file aside (never deleted: it is evidence), and puts the fresh
file in its place. What could not be read is written, in the fresh file, as a note (:data:`DAMAGE_PREFIX`) that the
recorder turns into a signed ``event_lost`` (:mod:`seal_agent.journal.outbox_damage`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sqlite3
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from seal_agent.errors import OutboxError
from seal_agent.journal.outbox_schema import _SCHEMA, SCHEMA_VERSION
from seal_protocol import utc_now_ms

logger = logging.getLogger(__name__)

#: Outbox ``meta`` keys of the damage notes not yet signed: ``DAMAGE_PREFIX + <kept file's name>``; "" once signed.
DAMAGE_PREFIX = "outbox_damage:"
#: SQLite's primary result codes of a damaged file.
DAMAGE_CODES = frozenset({sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB})
#: A damaged key range at most this long is checked key by key (rows absent were receipted, not lost).
_POINT_CHECK_MAX = 100_000
#: Keys are below this (SQLite's rowids are 64-bit; the outbox's never come near).
_KEY_CEILING = 1 << 62
#: Columns copied, per table, after the rowid.
_TABLES = {
    "outbox": "data, sha, created_at, acked_at",
    "snapshot_queue": "sha, created_at, acked_at",
    "snapshot_receipted": "sha",
    "meta": "key, value",
}
_INSERT = {
    "outbox": "INSERT INTO outbox (seq, data, sha, created_at, acked_at) VALUES (?, ?, ?, ?, ?)",
    "snapshot_queue": "INSERT INTO snapshot_queue (qid, sha, created_at, acked_at) VALUES (?, ?, ?, ?)",
    "snapshot_receipted": "INSERT INTO snapshot_receipted (sha) VALUES (?)",
    "meta": "INSERT INTO meta (key, value) VALUES (?, ?)",
}

Ranges = list[list[int]]


def is_damage(exc: BaseException) -> bool:
    """Whether a SQLite error says the file is damaged (not a full disk, a lock, or the statement's own fault)."""
    code = getattr(exc, "sqlite_errorcode", None)
    return isinstance(exc, sqlite3.DatabaseError) and code is not None and code & 0xFF in DAMAGE_CODES


def check(db: sqlite3.Connection) -> str | None:
    """``PRAGMA quick_check``: None if the file is sound, else the first fault it names (or the error it met)."""
    try:
        found = [str(row[0]) for row in db.execute("PRAGMA quick_check(5)")]
    except sqlite3.DatabaseError as exc:
        if not is_damage(exc):
            raise
        return str(exc)
    return None if found == ["ok"] else "; ".join(found)


def salvage(path: Path, found: str, known: Known | None = None) -> dict[str, Any]:
    """Replace the damaged outbox at ``path`` (no connection open in this process) by a fresh one holding every
    row that can be read; the damaged file is kept aside. Returns the damage note (also stored in the fresh file).
    ``known``: what the running outbox remembers of the file (its ``meta`` and the seqs it holds): its ``meta`` is
    kept (whether the file's can be read or not: a file cut short, emptied), only the events it holds are copied,
    and the seqs lost are exactly those of them that could not be read (never one the court had receipted: it was
    deleted already). Raises :class:`OutboxError` if the chain's place (``last_seq``, ``last_hash``) is known from
    neither: the chain cannot go on then, and the agent does not start."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    kept = path.with_name(f"{path.name}.damaged-{stamp}")
    fresh = path.with_name(f"{path.name}.salvage")
    for leftover in (fresh, fresh.with_name(fresh.name + "-journal")):
        leftover.unlink(missing_ok=True)  # a salvage cut short: only ever a copy
    old = sqlite3.connect(path, isolation_level=None)
    new = sqlite3.connect(fresh, isolation_level=None)
    try:
        # A file shorter than its header says (cut short by fsck, a torn card) is refused as malformed as soon as its
        # schema is read: with writable_schema SQLite reads what is there. The schema is never written here: the
        # old file is only read, once checkpointed.
        old.execute("PRAGMA writable_schema=ON")
        with contextlib.suppress(sqlite3.Error):
            old.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # the file kept aside then holds every commit
        old.execute("PRAGMA query_only=ON")
        new.execute("PRAGMA synchronous=FULL")
        new.execute("BEGIN IMMEDIATE")
        for statement in _SCHEMA:
            new.execute(statement)
        meta: dict[str, str] = {}
        lost_meta = _copy_table(old, "meta", _KEY_CEILING, lambda row: meta.__setitem__(str(row[1]), str(row[2])))
        if known is not None:  # the running outbox's own record, kept in step with every commit: never lost, and
            meta, lost_meta = dict(known.meta), []  # never taken from another file found at its path
        if "last_seq" not in meta or "last_hash" not in meta:
            raise OutboxError(
                f"{path} is damaged ({found}) where it records the chain's last seq and hash: the chain cannot go on "
                f"from it. The file is unchanged; see docs/reliability.md"
            )
        last_seq = int(meta["last_seq"])
        copied: set[int] = set()

        def put_event(row: tuple[Any, ...]) -> None:
            if known is None or int(row[0]) in known.held:  # another row is none of this outbox's
                new.execute(_INSERT["outbox"], row)
                copied.add(int(row[0]))

        lost_events = _copy_table(old, "outbox", last_seq, put_event)
        if known is not None:  # exactly the held seqs not read (a table gone, rows cut off, or unreadable)
            lost_events = ranges(known.held - copied)
        elif lost_events is None:  # the table is gone, and nothing says which seqs it held: all it may have
            lost_events = [[1, last_seq]] if last_seq >= 1 else []
        lost_queue = _copy_table(
            old, "snapshot_queue", _KEY_CEILING, lambda row: new.execute(_INSERT["snapshot_queue"], row)
        )
        lost_receipted = _copy_table(
            old, "snapshot_receipted", _KEY_CEILING, lambda row: new.execute(_INSERT["snapshot_receipted"], row[1:])
        )
        # A table gone, or read up to no known end: which snapshots it held is not known (those stored are queued
        # again at the next start); a range up to the key's ceiling would be no true id, nor a valid payload.
        unbounded = lost_queue is not None and any(last >= _KEY_CEILING for _, last in lost_queue)
        if lost_queue is not None:
            lost_queue = [[first, last] for first, last in lost_queue if last < _KEY_CEILING]
        lost_other = bool(lost_meta) or lost_receipted != [] or lost_queue is None or unbounded
        _keep_queue_ids(old, new)
        note = {
            "found": " ".join(found.split())[:200],
            "found_ts": utc_now_ms(),
            "kept": kept.name,
            "lost_seqs": lost_events,
            "lost_snapshot_ids": lost_queue or [],
            "lost_other_rows": lost_other,
        }
        if lost_events or lost_queue or note["lost_other_rows"]:  # an index's damage costs no row: nothing to sign
            meta[DAMAGE_PREFIX + kept.name] = json.dumps(note, separators=(",", ":"))
        new.executemany(_INSERT["meta"], sorted(meta.items()))
        new.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        new.execute("COMMIT")
    finally:
        old.close()
        new.close()
    os.link(path, kept)  # the damaged file keeps its name until the fresh one replaces it: no moment without one
    for suffix in ("-wal", "-shm"):
        side = path.with_name(path.name + suffix)
        if side.exists():  # never applied to the fresh file
            os.replace(side, kept.with_name(kept.name + suffix))
    os.replace(fresh, path)
    sync_dir(path.parent)
    logger.error(
        "outbox %s was damaged (%s): rebuilt from the rows that could be read; the damaged file is kept as %s; "
        "event seqs that could not be read: %s; snapshot queue ids: %s; other rows lost: %s",
        path, found, kept, lost_events or "none", lost_queue or "none", note["lost_other_rows"],
    )  # fmt: skip
    return note


@dataclass(frozen=True, slots=True)
class Known:
    """What a running outbox remembers of its file: its ``meta`` rows as last committed, and the seqs of the events
    it held (committed, not yet receipted)."""

    meta: dict[str, str]
    held: frozenset[int]


def ranges(seqs: Iterable[int]) -> Ranges:
    """``seqs`` as ranges ``[[first, last], …]``, in order."""
    found: Ranges = []
    for seq in sorted(seqs):
        _add(found, seq)
    return found


def _copy_table(
    db: sqlite3.Connection, table: str, ceiling: int, put: Callable[[tuple[Any, ...]], object]
) -> Ranges | None:
    """:func:`_copy`, or None if the damaged file holds no such table any more (cut short, emptied)."""
    try:
        present = db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)).fetchone()
    except sqlite3.DatabaseError as exc:
        if not is_damage(exc):
            raise
        present = True  # the schema cannot be read: the rows are tried one by one
    return _copy(db, table, ceiling, put) if present else None


def _copy(db: sqlite3.Connection, table: str, ceiling: int, put: Callable[[tuple[Any, ...]], object]) -> Ranges:
    """Hand every readable row of ``table`` (rowid first) to ``put``, in rowid order; the rowid ranges (up to
    ``ceiling``) whose rows could not be read."""
    lost: Ranges = []
    after = 0
    while True:
        try:
            for row in db.execute(
                f"SELECT rowid, {_TABLES[table]} FROM {table} WHERE rowid > ? ORDER BY rowid", (after,)
            ):
                put(row)
                after = int(row[0])
            return lost
        except sqlite3.DatabaseError as exc:
            if not is_damage(exc):
                raise
        try:
            found = _first_key(db, table, after + 1)
        except _Unreadable:  # the keys after ``after`` cannot be looked up: step to where they can again
            readable = _next_readable(db, table, after, ceiling)
            end = ceiling + 1 if readable is None else readable
            for key in _keys_between(db, table, after, end, lost):
                _put_row(db, table, key, put, lost)
            if readable is None:
                return lost
            after = readable - 1
            continue
        if found is None:
            return lost
        _put_row(db, table, found, put, lost)  # the scan met damage in this row's own pages, or got past it
        after = found


class _Unreadable(Exception):
    pass


def _first_key(db: sqlite3.Connection, table: str, key: int) -> int | None:
    """The first key from ``key`` on (None: none); :class:`_Unreadable` if it cannot be looked up."""
    try:
        row = db.execute(f"SELECT rowid FROM {table} WHERE rowid >= ? ORDER BY rowid LIMIT 1", (key,)).fetchone()
    except sqlite3.DatabaseError as exc:
        if not is_damage(exc):
            raise
        raise _Unreadable from None
    return None if row is None else int(row[0])


def _next_readable(db: sqlite3.Connection, table: str, after: int, ceiling: int) -> int | None:
    """The smallest key above ``after`` from which the table's keys can be looked up again, None if none up to
    ``ceiling``: probes doubling their step, then halving, for the end of the damaged key range."""

    def readable(key: int) -> bool:
        try:
            _first_key(db, table, key)
        except _Unreadable:
            return False
        return True

    bad, step = after, 1
    while True:
        good = bad + step
        if good > ceiling:
            if not readable(ceiling + 1):
                return None
            good = ceiling + 1
            break
        if readable(good):
            break
        bad, step = good, step * 2
    while good - bad > 1:
        middle = (bad + good) // 2
        if readable(middle):
            good = middle
        else:
            bad = middle
    return good


def _keys_between(db: sqlite3.Connection, table: str, after: int, end: int, lost: Ranges) -> list[int]:
    """The keys in the damaged range (``after``, ``end``) that hold a row, looked up one by one when the range is
    short (a key found absent was receipted, not lost; one that cannot be looked up is lost); a long range is lost
    whole."""
    if end - after - 1 > _POINT_CHECK_MAX:
        lost.append([after + 1, end - 1])
        return []
    keys = []
    for key in range(after + 1, end):
        try:
            found = db.execute(f"SELECT rowid FROM {table} WHERE rowid = ?", (key,)).fetchone()
        except sqlite3.DatabaseError as exc:
            if not is_damage(exc):
                raise
            _add(lost, key)
            continue
        if found is not None:
            keys.append(key)
    return keys


def _put_row(
    db: sqlite3.Connection, table: str, key: int, put: Callable[[tuple[Any, ...]], object], lost: Ranges
) -> None:
    row = _row(db, table, key)
    if row is None:
        _add(lost, key)
    else:
        put(row)


def _row(db: sqlite3.Connection, table: str, key: int) -> tuple[Any, ...] | None:
    try:
        row = db.execute(f"SELECT rowid, {_TABLES[table]} FROM {table} WHERE rowid = ?", (key,)).fetchone()
    except sqlite3.DatabaseError as exc:
        if not is_damage(exc):
            raise
        return None
    return None if row is None else tuple(row)


def _add(lost: Ranges, key: int) -> None:
    if lost and lost[-1][1] == key - 1:
        lost[-1][1] = key
    else:
        lost.append([key, key])


def _keep_queue_ids(old: sqlite3.Connection, new: sqlite3.Connection) -> None:
    """Never hand out again a snapshot queue id the damaged file had handed out (its courier may hold it)."""
    try:
        row = old.execute("SELECT seq FROM sqlite_sequence WHERE name = 'snapshot_queue'").fetchone()
    except sqlite3.DatabaseError as exc:
        if not is_damage(exc) and "no such table" not in str(exc):  # else: damaged, or gone with the file's end
            raise
        return
    if row is not None:
        new.execute("DELETE FROM sqlite_sequence WHERE name = 'snapshot_queue'")
        new.execute("INSERT INTO sqlite_sequence (name, seq) VALUES ('snapshot_queue', ?)", (int(row[0]),))


def sync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


#: At most this many ranges of each kind are named in an ``event_lost`` (the log and the kept file have them all).
_RANGES_NAMED = 50


def lost_payload(note_text: str) -> dict[str, Any]:
    """The ``event_lost`` payload that tells the court of a repair (its note, as stored), reason ``outbox_damaged``
    (or, for a file written back to its place, ``outbox_deleted`` or ``outbox_replaced``, with nothing lost):
    ``lost_seqs`` are the seq ranges whose rows could not be read (those the court had receipted were gone from the
    outbox already; the rest are lost), ``lost_snapshot_ids`` the snapshot queue ids (the spool queues a stored
    snapshot that is neither queued nor receipted again at the next start)."""
    note = json.loads(note_text)
    events, queue = note["lost_seqs"], note["lost_snapshot_ids"]
    reason = note.get("reason", "outbox_damaged")  # or outbox_deleted, outbox_replaced (outbox_place)
    if reason != "outbox_damaged":
        kept = f"; what was found in its place kept as {note['kept']}" if note["kept"] else ""
        detail = f"{note['found']}; written back from the open database, nothing lost{kept}"
    else:
        detail = f"{note['found']}; damaged file kept as {note['kept']}"
    if len(events) > _RANGES_NAMED or len(queue) > _RANGES_NAMED:
        detail = (
            f"{len(events)} seq ranges, {len(queue)} snapshot id ranges (the first {_RANGES_NAMED} named); {detail}"
        )
    return {
        "lost_type": None,
        "lost_ts": note["found_ts"],
        "reason": reason,
        "detail": detail[:300],
        "lost_seqs": events[:_RANGES_NAMED],
        "lost_snapshot_ids": queue[:_RANGES_NAMED],
        "lost_other_rows": note["lost_other_rows"],
    }
