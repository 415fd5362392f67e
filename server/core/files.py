"""A directory of files named by their SHA-256: ``<directory>/<sha256><suffix>`` (the default
:class:`~server.core.object_store.ObjectBackend` of snapshots and removal proofs).

A file is written to a temporary name of its own, flushed to disk and renamed, and the directory is flushed too, so a
crash leaves either no file or the whole file — and once the caller commits the row that names it, the file survives
a power cut. Writing the same bytes twice, even at once, is harmless: the name is their hash.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import secrets
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from server.core.blobs import CHUNK_BYTES, Blob
from server.errors import ContentStoreUnavailable

logger = logging.getLogger(__name__)

_SHA256 = re.compile(r"^[0-9a-f]{64}$")

#: The temporary name :func:`replace_atomically` gives an object of a store while it is written:
#: ``.<sha256><suffix>.<mkstemp's 8 random characters>.tmp`` (suffix: ``.jpg``, ``.pdf``, ``.png`` or none).
STORE_TEMP_NAME = re.compile(r"^\.[0-9a-f]{64}(?:\.[a-z0-9]{1,8})?\.[a-z0-9_]{8}\.tmp$")
#: How long after its last write a temporary file of a store is taken for a crash's leftover. A writer writes its
#: object in one call and renames it right after (seconds at most); another process sharing the directory (an
#: ingest worker, the court server) may be writing one as this one starts, so a younger file is left alone. Were a
#: writer stalled longer than this, its rename fails and the object is written again, as after any failing disk.
LEFTOVER_AGE_S = 15 * 60.0


def is_sha256(text: str) -> bool:
    return _SHA256.fullmatch(text) is not None


def replace_atomically(path: Path, data: bytes, mode: int) -> None:
    """Replace ``path`` with ``data``, created with ``mode``: through a temporary file of its own
    (:func:`tempfile.mkstemp` beside it: two writers at once never remove or rename each other's), flushed to disk and
    renamed, then the directory flushed; a crash leaves the old file or the new one, whole, and a failure (a full
    disk) leaves no half-written file behind. Written by root, the file belongs to the directory's owner and group
    (the account the server and its broker run as), not to root."""
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    tmp = Path(temp)
    try:
        with open(fd, "wb") as fh:
            os.fchmod(fh.fileno(), mode)
            if os.geteuid() == 0:  # root (the CLI run with sudo): the file stays the directory owner's, who reads it
                owner = os.stat(path.parent)
                os.fchown(fh.fileno(), owner.st_uid, owner.st_gid)
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    sync_directory(path.parent)


def move_into_place(temp: Path, target: Path) -> None:
    """Rename the written file ``temp`` to ``target`` (same directory) durably: ``temp`` flushed to disk first, the
    directory after, so that once this returns — and only then — the caller may record that ``target`` is written."""
    sync_file(temp)
    os.replace(temp, target)
    sync_directory(target.parent)


@dataclass(frozen=True)
class Placed:
    """A file moved into place by :func:`place_until_recorded`: the caller records it, then calls :meth:`keep`, or,
    if the record fails, :meth:`undo`."""

    target: Path
    #: The file ``target`` named before, kept aside under a temporary name beside it; ``None`` if there was none.
    earlier: Path | None

    def undo(self) -> None:
        """Put back the file ``target`` named before (or remove ``target`` if it named none), then flush the
        directory: a failed record leaves the path as it was."""
        if self.earlier is None:
            self.target.unlink(missing_ok=True)
        else:
            os.replace(self.earlier, self.target)
        sync_directory(self.target.parent)

    def keep(self) -> None:
        """The new file is recorded: remove the earlier one kept aside (if any), then flush the directory."""
        if self.earlier is None:
            return
        try:
            self.earlier.unlink(missing_ok=True)
            sync_directory(self.target.parent)
        except OSError as exc:  # the new file is in place and recorded: a leftover copy is no failure of it
            logger.warning("cannot remove %s (what %s named before): %s", self.earlier, self.target, exc.strerror)


def place_until_recorded(temp: Path, target: Path) -> Placed:
    """:func:`move_into_place` ``temp`` as ``target``, keeping the file ``target`` named before — a bundle recorded
    earlier — under a temporary name beside it (a hard link, flushed; copied where the filesystem has no hard links)
    until the caller has recorded the new one (:meth:`Placed.keep`) or put the earlier one back (:meth:`Placed.undo`).
    A failure leaves ``target`` as it was. A crash between the rename and the caller's record leaves the new file at
    ``target``, unrecorded, and the earlier one beside it as ``.<name>.<random>.kept``."""
    earlier = _keep_aside(target)
    placed = Placed(target, earlier)
    try:
        move_into_place(temp, target)
    except BaseException:
        placed.undo()
        raise
    return placed


def _keep_aside(target: Path) -> Path | None:
    """A second name, beside ``target``, for the file it names (``None`` if it names none), flushed to disk."""
    for _ in range(100):
        aside = target.with_name(f".{target.name}.{secrets.token_hex(6)}.kept")
        try:
            _link(target, aside)
        except FileNotFoundError:
            return None
        except FileExistsError:
            continue
        sync_directory(target.parent)
        return aside
    raise FileExistsError(errno.EEXIST, "no free temporary name beside it", str(target))


def _link(target: Path, aside: Path) -> None:
    """Make ``aside`` (which must not exist) a hard link to ``target`` (itself, if a symbolic link); on a filesystem
    without hard links (FAT, exFAT), a copy of it, flushed to disk."""
    try:
        os.link(target, aside, follow_symlinks=False)
        return
    except OSError as exc:
        if exc.errno not in _NO_HARD_LINKS:
            raise
    with target.open("rb") as source, aside.open("xb") as copy:
        try:
            shutil.copyfileobj(source, copy)
            copy.flush()
            os.fsync(copy.fileno())
        except BaseException:
            aside.unlink(missing_ok=True)
            raise


#: What ``link(2)`` answers on a filesystem that has no hard links (FAT and exFAT: EPERM).
_NO_HARD_LINKS = frozenset({errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK})


def sync_file(path: Path) -> None:
    """Flush the bytes written to ``path`` (closed by its writer) to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sync_directory(directory: Path) -> None:
    """Flush ``directory``'s entries to disk (a file renamed or removed in it)."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class DirectoryObjects:
    """Objects as files of one directory, which must exist: it is made when the court is set up (``seal-server
    init``, :func:`make_store_root`), never by a write or a read. A directory that is missing — its disk not mounted —
    is the store being unavailable (:class:`~server.errors.ContentStoreUnavailable`, logged as an ERROR naming it):
    made again where the disk should be, it would hold pictures on the wrong filesystem, and read as an empty
    directory, it would have every picture called lost."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.description = f"directory {directory}"

    def path_for(self, name: str) -> Path:
        if not name or "/" in name or name.startswith("."):
            raise ValueError(f"not an object's name: {name!r}")
        return self.directory / name

    def put_once(self, name: str, data: bytes) -> bool:
        """Write ``data`` as ``name`` unless that file exists.

        Each writer has a temporary file of its own (:func:`tempfile.mkstemp` in the directory): two writers of
        the same bytes at once — the same receipt filed twice — each write and rename their own, and neither
        truncates a file the other is about to rename. The first rename is the file; the second replaces it with
        the same bytes (the caller has checked that the name is their hash)."""
        path = self.path_for(name)
        if path.exists():
            return False
        self._root()
        replace_atomically(path, data, 0o640)
        return True

    def open(self, name: str) -> Blob | None:
        try:
            fh = self.path_for(name).open("rb")
        except FileNotFoundError:
            self._root()  # no such object — or no directory at all: that is no answer
            return None
        return Blob(os.fstat(fh.fileno()).st_size, _chunks(fh))

    def remove(self, name: str) -> None:
        self._root()
        self.path_for(name).unlink(missing_ok=True)
        sync_directory(self.directory)

    def size(self, name: str) -> int | None:
        try:
            return self.path_for(name).stat().st_size
        except FileNotFoundError:
            self._root()
            return None

    def remove_leftovers(self, *, older_than_s: float = LEFTOVER_AGE_S) -> tuple[int, int]:
        """Remove the temporary files (:data:`STORE_TEMP_NAME`) that writes cut short by a crash left in the
        directory, if their last write is ``older_than_s`` ago; nothing else. ``(files, bytes)`` removed, logged in
        one line; a directory that cannot be read is logged and left (the store's own check says why)."""
        removed = kept = size = 0
        cutoff = time.time() - older_than_s
        try:
            with os.scandir(self.directory) as entries:
                for entry in entries:
                    if STORE_TEMP_NAME.fullmatch(entry.name) is None or not entry.is_file(follow_symlinks=False):
                        continue
                    stat = entry.stat(follow_symlinks=False)
                    if stat.st_mtime > cutoff:
                        kept += 1
                        continue
                    try:
                        os.unlink(entry.path)
                    except FileNotFoundError:  # renamed or removed by another process meanwhile
                        continue
                    removed, size = removed + 1, size + stat.st_size
        except OSError as exc:
            logger.warning("cannot look for interrupted writes in %s: %s", self.directory, exc.strerror or exc)
            return removed, size
        if removed:
            sync_directory(self.directory)
        logger.info(
            "%s: removed %d temporary files of interrupted writes (%d bytes); %d younger than %.0f s kept",
            self.directory,
            removed,
            size,
            kept,
            older_than_s,
        )
        return removed, size

    def check(self) -> None:
        """The directory exists, and this process may read, write and search it."""
        self._root()
        if not os.access(self.directory, os.R_OK | os.W_OK | os.X_OK):
            raise self._unavailable("cannot be read and written by this account")

    def _root(self) -> None:
        """Raise :class:`ContentStoreUnavailable` unless the directory is there (a file, or nothing, is not)."""
        if not self.directory.is_dir():
            found = "is not a directory" if self.directory.exists() else "does not exist"
            made = "it is made by `seal-server init` or `init-db`, or by hand"
            raise self._unavailable(f"{found} (is its disk mounted? {made})")

    def _unavailable(self, why: str) -> ContentStoreUnavailable:
        logger.error("the store's directory %s %s", self.directory, why)
        return ContentStoreUnavailable(f"{self.description} {why}")


def make_store_root(directory: Path) -> None:
    """Make a directory store's root (and its parents), readable by its owner alone; at setup, never by a write."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)


def _chunks(fh: BinaryIO) -> Iterator[bytes]:
    try:
        while chunk := fh.read(CHUNK_BYTES):
            yield chunk
    finally:
        fh.close()
