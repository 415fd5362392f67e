"""A content-addressed, quota-bounded store of JPEG snapshots on the device's disk.

Layout: ``<directory>/<sha[:2]>/<sha>.jpg`` where ``sha`` is the SHA-256 (hex) of the file's bytes. Events are never
dropped to make room; only snapshots are thinned, oldest first, sparing the ones still needed. The quota counts every
file under the directory, not only the snapshots (a file set aside as oversized, anything else put there); a write is
made in a temporary ``.tmp-*.jpg`` beside its target, and the leftovers of a write a crash cut short are removed when
the store is opened.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import tempfile
import threading
import time
from collections.abc import Collection, Iterator
from pathlib import Path

from seal_agent.errors import InvalidSnapshotHash, SnapshotCorrupt, SnapshotNotFound

logger = logging.getLogger(__name__)

_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
_JPEG_MAGIC = b"\xff\xd8"


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _check_sha(sha: str) -> str:
    if not _SHA256_HEX.fullmatch(sha):
        raise InvalidSnapshotHash(f"invalid snapshot hash {sha!r}: expected 64 lowercase hex digits")
    return sha


class SnapshotStore:
    """Snapshots by SHA-256 under ``directory``, kept within ``quota_bytes`` by :meth:`thin_to_quota`.

    Safe to use from several threads; writes are atomic (temporary file, fsync, rename), so a power cut leaves either
    the whole snapshot or none of it.
    """

    def __init__(self, directory: str | Path, quota_bytes: int) -> None:
        if quota_bytes <= 0:
            raise ValueError("quota_bytes must be positive")
        self.directory = Path(directory)
        self.quota_bytes = quota_bytes
        self._lock = threading.Lock()
        self.directory.mkdir(parents=True, exist_ok=True)
        self._remove_interrupted_writes()
        # Age is the file's mtime, made strictly increasing (a burst of snapshots lands within one clock tick, and a
        # Pi without a real-time clock may boot with a clock behind the newest stored snapshot).
        self._last_stamp = max((stat.st_mtime_ns for stat in self._stats()), default=0)

    def path(self, sha: str) -> Path:
        _check_sha(sha)
        return self.directory / sha[:2] / f"{sha}.jpg"

    def put(self, jpeg: bytes) -> str:
        """Store ``jpeg`` and return its SHA-256 hex; storing the same bytes again changes nothing."""
        return self.write(jpeg)[0]

    @staticmethod
    def address(jpeg: bytes) -> str:
        """The hash ``jpeg`` is stored under; :class:`ValueError` if it is not a JPEG image."""
        if not jpeg.startswith(_JPEG_MAGIC):
            raise ValueError("not a JPEG image (missing SOI marker)")
        return sha256_hex(jpeg)

    def write(self, jpeg: bytes) -> tuple[str, bool]:
        """Store ``jpeg``: its SHA-256 hex, and whether this call created the file (False: it was stored already)."""
        sha = self.address(jpeg)
        target = self.path(sha)
        with self._lock:
            if target.exists():
                return sha, False
            target.parent.mkdir(exist_ok=True)
            fd, temp_name = tempfile.mkstemp(dir=target.parent, prefix=".tmp-", suffix=".jpg")
            try:
                with os.fdopen(fd, "wb") as file:
                    file.write(jpeg)
                    file.flush()
                    os.fsync(file.fileno())
                self._last_stamp = max(time.time_ns(), self._last_stamp + 1)
                os.utime(temp_name, ns=(self._last_stamp, self._last_stamp))
                os.replace(temp_name, target)
            except BaseException:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(temp_name)
                raise
            _fsync_directory(target.parent)
        logger.debug("stored snapshot %s (%d bytes)", sha, len(jpeg))
        return sha, True

    def get(self, sha: str) -> bytes:
        """The stored bytes of ``sha``, checked against their name: :class:`SnapshotNotFound` if there is no such
        file, :class:`SnapshotCorrupt` if its bytes no longer hash to ``sha`` (the court would never receipt them)."""
        try:
            jpeg = self.path(sha).read_bytes()
        except FileNotFoundError:
            raise SnapshotNotFound(sha) from None
        actual = sha256_hex(jpeg)
        if actual != sha:
            raise SnapshotCorrupt(sha, actual)
        return jpeg

    def set_aside(self, sha: str, folder: str) -> Path:
        """Move the stored file of ``sha`` (whatever its bytes) to ``<directory>/<folder>/``, out of the store's
        listing but still on the disk (evidence of a fault) and still counted by the quota; where it went. Raises
        :class:`OSError` if it cannot be moved (:class:`FileNotFoundError` if there is no file)."""
        source = self.path(sha)
        target = self.directory / folder / source.name
        with self._lock:
            target.parent.mkdir(exist_ok=True)
            os.replace(source, target)
            _fsync_directory(target.parent)
        return target

    def __contains__(self, sha: object) -> bool:
        return isinstance(sha, str) and _SHA256_HEX.fullmatch(sha) is not None and self.path(sha).is_file()

    def delete(self, sha: str) -> bool:
        """Remove a snapshot; ``False`` if there was none."""
        path = self.path(sha)
        with self._lock:
            try:
                path.unlink()
            except FileNotFoundError:
                return False
        return True

    def hashes(self) -> list[str]:
        """Every stored snapshot, oldest first."""
        return [sha for sha, _size in self._entries()]

    def entries(self) -> list[tuple[str, int]]:
        """``(sha, size)`` of every stored snapshot, oldest first."""
        return self._entries()

    def total_bytes(self) -> int:
        """Every byte of every file under the store's directory: what the quota counts."""
        total = 0
        for root, _dirs, files in os.walk(self.directory):
            for name in files:
                with contextlib.suppress(FileNotFoundError):
                    total += os.lstat(os.path.join(root, name)).st_size
        return total

    def delete_all(self, shas: Collection[str]) -> None:
        """Remove these snapshots (those already gone are skipped)."""
        with self._lock:
            for sha in shas:
                with contextlib.suppress(FileNotFoundError):
                    self.path(sha).unlink()

    def thin_to_quota(self, protected: Collection[str] = frozenset(), target_bytes: int | None = None) -> list[str]:
        """Delete the oldest snapshots not in ``protected`` until the store holds at most ``target_bytes`` (default:
        the quota); return what was deleted.

        If the protected snapshots alone exceed the target, the store stays over it: they are never deleted here.
        """
        target = self.quota_bytes if target_bytes is None else target_bytes
        removed: list[str] = []
        with self._lock:
            entries = self._entries()
            total = self.total_bytes()
            for sha, size in entries:
                if total <= target:
                    break
                if sha in protected:
                    continue
                with contextlib.suppress(FileNotFoundError):
                    self.path(sha).unlink()
                total -= size
                removed.append(sha)
        if removed:
            logger.info("thinned %d snapshots to fit the %d-byte quota", len(removed), self.quota_bytes)
        return removed

    def _remove_interrupted_writes(self) -> None:
        """Remove the temporary files of writes a crash cut short (they would hold disk space outside any count)."""
        for bucket in os.scandir(self.directory):
            if not (bucket.is_dir() and len(bucket.name) == 2):
                continue
            for entry in os.scandir(bucket.path):
                if entry.name.startswith(".tmp-") and entry.is_file(follow_symlinks=False):
                    size = entry.stat(follow_symlinks=False).st_size
                    os.unlink(entry.path)
                    logger.warning("removed %s (%d bytes), left by a write a crash cut short", entry.path, size)

    def _entries(self) -> list[tuple[str, int]]:
        """``(sha, size)`` of every snapshot, oldest (by modification time) first."""
        found = sorted((stat.st_mtime_ns, sha, stat.st_size) for sha, stat in self._stats_by_sha())
        return [(sha, size) for _mtime, sha, size in found]

    def _stats(self) -> Iterator[os.stat_result]:
        return (stat for _sha, stat in self._stats_by_sha())

    def _stats_by_sha(self) -> Iterator[tuple[str, os.stat_result]]:
        for entry in self._scan():
            try:
                yield entry.name[:-4], entry.stat()
            except FileNotFoundError:
                continue

    def _scan(self) -> Iterator[os.DirEntry[str]]:
        for bucket in os.scandir(self.directory):
            if not (bucket.is_dir() and len(bucket.name) == 2):
                continue
            for entry in os.scandir(bucket.path):
                if entry.name.endswith(".jpg") and _SHA256_HEX.fullmatch(entry.name[:-4]) and entry.is_file():
                    yield entry


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
