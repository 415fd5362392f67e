"""An outbox file that leaves its place while the agent runs is written back from the open database.

SQLite keeps its files open: an outbox deleted (with its ``-wal`` and ``-shm``), moved away or replaced by another
file while the agent runs takes every later commit into a file nobody can find again, and the next start finds no
outbox (the agent refuses to start: the chain cannot go on). So the outbox checks, at each commit and at each tick of
the seal's timer, that its path still names the files its connection has open (:func:`moved`: their device and inode
against those recorded when they were opened). If not, :func:`restore` writes the open database — every committed
row is still in it — into a fresh file beside the path (SQLite's online backup), makes it durable, puts it in the
path's place and keeps any other file found there aside (``<name>.displaced-<time>``, never overwritten). A note in
the fresh file's ``meta`` (as for a damaged file, :mod:`seal_agent.journal.outbox_salvage`) becomes a signed
``event_lost`` with reason ``outbox_deleted`` or ``outbox_replaced`` and no lost seq: the court learns that the
seal's store was tampered with or failed, and that nothing was lost.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from seal_agent.errors import OutboxLocked
from seal_agent.journal.outbox_salvage import DAMAGE_PREFIX, sync_dir
from seal_protocol import utc_now_ms

logger = logging.getLogger(__name__)

#: The files of one outbox: the database and SQLite's two beside it.
SUFFIXES = ("", "-wal", "-shm")

#: (device, inode) of each of an outbox's files its connection has open, by suffix.
FileIds = dict[str, tuple[int, int]]


def file_ids(path: Path) -> FileIds:
    """The (device, inode) of the outbox files found at ``path`` now."""
    ids: FileIds = {}
    for suffix in SUFFIXES:
        try:
            found = os.stat(path.with_name(path.name + suffix))
        except FileNotFoundError:
            continue
        ids[suffix] = (found.st_dev, found.st_ino)
    return ids


def moved(path: Path, ids: FileIds) -> tuple[str, str] | None:
    """Whether the outbox files at ``path`` are no longer the open ones (``ids``): None, or the event_lost reason
    (``outbox_deleted``, ``outbox_replaced``) and what was found. A ``-wal`` or ``-shm`` seen for the first time (SQLite
    makes them at the first read) is added to ``ids``."""
    for suffix in SUFFIXES:
        name = path.name + suffix
        try:
            found = os.stat(path.with_name(name))
        except FileNotFoundError:
            if suffix == "" or suffix in ids:
                return "outbox_deleted", f"{name} was deleted (or moved away) while in use"
            continue
        if ids.setdefault(suffix, (found.st_dev, found.st_ino)) != (found.st_dev, found.st_ino):
            return "outbox_replaced", f"{name} was replaced by another file while in use"
    return None


def restore(db: sqlite3.Connection, path: Path, ids: FileIds, reason: str, found: str) -> tuple[str, dict[str, Any]]:
    """Write the open database ``db`` back to ``path`` (see the module) and close ``db``; the caller opens the
    restored file. Returns the note's ``meta`` key and the note (also stored in the restored file). Raises
    ``sqlite3.Error`` or ``OSError`` if it cannot be written; ``db`` is then left open and nothing at ``path`` is
    touched."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    fresh = path.with_name(f"{path.name}.restore")
    for leftover in (fresh, fresh.with_name(fresh.name + "-journal")):
        leftover.unlink(missing_ok=True)  # a restore cut short: only ever a copy
    displaced = path.with_name(f"{path.name}.displaced-{stamp}")
    ours = {suffix: ids.get(suffix) for suffix in SUFFIXES}
    others = [s for s, i in file_ids(path).items() if i != ours[s]]  # found at the path, not the open files
    note: dict[str, Any] = {
        "found": found,
        "found_ts": utc_now_ms(),
        "kept": ", ".join(displaced.name + suffix for suffix in others) or None,  # each file kept aside, named
        "lost_seqs": [],
        "lost_snapshot_ids": [],
        "lost_other_rows": False,
        "reason": reason,
    }
    key = f"{DAMAGE_PREFIX}{path.name}.restored-{stamp}"
    copy = sqlite3.connect(fresh, isolation_level=None)
    try:
        db.backup(copy)  # every committed row, the write-ahead log's too: the open files are still readable
        copy.execute("INSERT INTO meta (key, value) VALUES (?, ?)", (key, json.dumps(note, separators=(",", ":"))))
    finally:
        copy.close()
    fd = os.open(fresh, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    for suffix in others:  # never overwritten, never deleted: kept aside, and said
        os.replace(path.with_name(path.name + suffix), displaced.with_name(displaced.name + suffix))
    db.close()
    for suffix in ("-wal", "-shm"):  # the open ones, still at the path: all they held is in the fresh file
        side = path.with_name(path.name + suffix)
        with_ids = file_ids(path).get(suffix)
        if with_ids is not None and with_ids == ours[suffix]:
            side.unlink()
    os.replace(fresh, path)
    sync_dir(path.parent)
    logger.error(
        "outbox %s: %s; written back from the open database (nothing lost)%s",
        path, found, f"; what was found in its place is kept as {note['kept']}" if note["kept"] else "",
    )  # fmt: skip
    return key, note


def lock_process(lock_path: Path) -> int:
    """Take the lock file beside an outbox (only one process may use it), held until its descriptor is closed."""
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise OutboxLocked(f"{lock_path}: another seal agent uses this state_dir") from None
    return fd
