"""Snapshot files, addressed by their SHA-256: ``<snapshot_dir>/<sha256>.jpg``.

A file is written to a temporary name, flushed to disk and renamed, and the directory is flushed too, so a crash
leaves either no file or the whole file — and once the ingest acknowledges the message, the file survives a power
cut. Writing the same picture twice is harmless: the name is its content's hash.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

MAX_SNAPSHOT_BYTES = 8 * 1024 * 1024
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class SnapshotStore:
    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def path_for(self, sha256: str) -> Path:
        if not _SHA256.fullmatch(sha256):
            raise ValueError(f"not a SHA-256 (64 lowercase hex digits): {sha256!r}")
        return self.directory / f"{sha256}.jpg"

    def put(self, sha256: str, data: bytes) -> Path:
        """Store ``data`` under ``sha256`` (which the caller has checked) and return its path; raise ``OSError``."""
        if hashlib.sha256(data).hexdigest() != sha256:
            raise ValueError("snapshot bytes do not match their SHA-256")
        path = self.path_for(sha256)
        if path.exists() and path.stat().st_size == len(data):
            return path
        self.directory.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        with open(tmp, "wb", opener=lambda p, flags: os.open(p, flags, 0o640)) as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        directory = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
        return path
