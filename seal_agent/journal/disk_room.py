"""Room on the disk for the outbox: snapshots never take what the events need.

Events are never dropped, snapshots are thinned (:mod:`seal_agent.journal.snapshot_spool`). The quota alone does not
keep that promise when the disk is smaller than the quota, or something else (the system's logs) fills it: the
outbox would then refuse events (``SQLITE_FULL``) while snapshots, even those the court holds, stay on the disk.
So:

- at start, the snapshot quota in force is at most what the disk can hold for snapshots: the free space and what the
  store holds already, less a reserve for the outbox (:func:`room_goal`, at most half of it) — logged, and every
  ``outbox_full`` names the quota in force (``quota_bytes``);
- when the outbox refuses an event for a full disk, or a snapshot's write meets ``ENOSPC``, the spool thins
  snapshots (the order and the record of any thinning: receipted ones first) to free :func:`room_goal` bytes, or
  what there is, and the held events are committed;
- a thinning is recorded before any file goes, so recording it needs room on a disk that has none: a small file
  beside the outbox (:class:`Reserve`, :data:`RESERVE_FILE`) is kept for that moment; it is deleted just before the
  thinning's ``outbox_full`` (and the events held before it) are committed, and written again afterwards;
- the outbox's write-ahead log keeps the size it once reached (SQLite reuses it, never shrinks it), and on a tiny
  disk it alone can fill the disk while the database holds little: a commit refused with ``SQLITE_FULL`` first
  checkpoints it into the database and truncates it (:func:`give_back_wal`), then tries once more — so no snapshot
  is thinned, and no event held in memory, for room the log gives back. After a thinning, the held events' commit
  meets the same handling.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

logger = logging.getLogger(__name__)

#: A thinning for a full disk frees at least this much (or a tenth of the quota, if more; or all there is).
ROOM_GOAL_MIN_BYTES = 8 * 1024 * 1024
#: The file kept beside the outbox so that a thinning can be recorded on a full disk.
RESERVE_FILE = "outbox.reserve"
#: Its size: at most this, and at most an eighth of the filesystem.
RESERVE_BYTES = 256 * 1024
_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})


def room_goal(quota_bytes: int) -> int:
    """Bytes a thinning for a full disk frees (and the start leaves free for the outbox)."""
    return max(quota_bytes // 10, ROOM_GOAL_MIN_BYTES)


def is_disk_full(exc: BaseException | None) -> bool:
    """Whether ``exc`` (or an error it was raised from) says the disk is full: ``ENOSPC``/``EDQUOT`` or SQLite's
    ``SQLITE_FULL``."""
    seen = 0
    while exc is not None and seen < 8:
        if isinstance(exc, OSError) and exc.errno in _FULL_ERRNOS:
            return True
        code = getattr(exc, "sqlite_errorcode", None)
        if isinstance(exc, sqlite3.Error) and isinstance(code, int) and code & 0xFF == sqlite3.SQLITE_FULL:
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False


def give_back_wal(db: sqlite3.Connection, path: Path, exc: BaseException | None) -> bool:
    """After ``exc``, a refused commit to the database ``path`` (``db`` outside a transaction), or (None) after room
    was made on a full disk: if the disk is full, checkpoint the write-ahead log into the database and truncate it
    (``PRAGMA wal_checkpoint(TRUNCATE)``). Whether it gave back any room (logged): a commit is worth trying again.
    The checkpoint itself may need room (the database grows to hold pages only the log has): then it fails (logged)
    until a thinning or the reserve makes some."""
    if (exc is not None and not is_disk_full(exc)) or db.in_transaction:
        return False
    wal = Path(f"{path}-wal")
    before = _size(wal)
    try:
        busy = db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
    except sqlite3.Error as failed:
        logger.warning("the disk is full and the outbox's log %s cannot be checkpointed: %s", wal, failed)
        return False
    freed = before - _size(wal)
    if busy or freed <= 0:
        return False
    logger.warning("the disk is full: the outbox's log %s checkpointed and truncated, %d bytes given back", wal, freed)
    return True


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def capped_quota(directory: Path, quota_bytes: int, held_bytes: int) -> int:
    """The snapshot quota in force: ``quota_bytes``, or less if the disk of ``directory`` cannot hold that much
    besides a reserve for the outbox (its free space + ``held_bytes``, what the store holds, − :func:`room_goal`, at
    most half of that room). Logged when lower. At least 1 byte."""
    try:
        stat = os.statvfs(directory)
    except OSError as exc:
        logger.error("cannot read the free space of %s (%s): the quota stays %d bytes", directory, exc, quota_bytes)
        return quota_bytes
    room = stat.f_bavail * stat.f_frsize + held_bytes
    capped = max(1, room - min(room_goal(quota_bytes), room // 2))
    if capped >= quota_bytes:
        return quota_bytes
    logger.warning(
        "the snapshot quota of %d bytes is more than the disk can hold besides the outbox (%d bytes free, %d held by "
        "snapshots): %d bytes in force",
        quota_bytes,
        room - held_bytes,
        held_bytes,
        capped,
    )
    return capped


class Reserve:
    """A file of :data:`RESERVE_BYTES` (at most an eighth of the filesystem) at ``path``, kept so that a thinning
    can be recorded on a full disk. Made when built (on a disk that cannot hold it, it is not there: logged)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            stat = os.statvfs(path.parent)
            self.size = min(RESERVE_BYTES, stat.f_blocks * stat.f_frsize // 8)
        except OSError:
            self.size = RESERVE_BYTES
        self.restore()

    @property
    def held(self) -> bool:
        """Whether the reserve is on the disk."""
        try:
            return self.path.stat().st_size >= self.size
        except OSError:
            return False

    def release(self) -> bool:
        """Delete the reserve (its room is for the thinning's record); whether there was one."""
        if not self.held:
            return False
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        logger.warning("the disk is full: %s (%d bytes) released to record a thinning", self.path, self.size)
        return True

    def restore(self) -> None:
        """Write the reserve again, if it is not there (a disk without the room for it: logged, tried again later)."""
        if self.held:
            return
        try:
            with open(self.path, "wb") as file:
                file.write(bytes(self.size))  # written, not sparse: its blocks are the room
                file.flush()
                os.fsync(file.fileno())
        except OSError as exc:
            with contextlib.suppress(OSError):
                self.path.unlink()
            logger.error(
                "no room for the outbox's reserve %s (%s): a thinning on a full disk may not be recordable",
                self.path,
                exc,
            )


class FullDiskWatch:
    """Tells :attr:`on_full` (the spool's ``make_room``) that the outbox refused an event for a full disk: counted by
    :meth:`counting` around each commit, told by :meth:`telling` once the line's lock is let go."""

    def __init__(self) -> None:
        self.on_full: Callable[[], object] = _nothing
        self._refusals = 0

    @contextlib.contextmanager
    def counting(self) -> Iterator[None]:
        try:
            yield
        except OSError as exc:
            self._refusals += is_disk_full(exc)
            raise

    @contextlib.contextmanager
    def telling(self) -> Iterator[None]:
        before = self._refusals
        try:
            yield
        finally:
            if self._refusals != before:
                self.on_full()


def _nothing() -> None:
    pass
