"""Files addressed by their SHA-256: ``<directory>/<sha256><suffix>`` (snapshots, removal proofs).

A file is written to a temporary name of its own, flushed to disk and renamed, and the directory is flushed too, so a
crash leaves either no file or the whole file — and once the caller commits the row that names it, the file survives
a power cut. Writing the same bytes twice, even at once, is harmless: the name is their hash.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from pathlib import Path

_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def is_sha256(text: str) -> bool:
    return _SHA256.fullmatch(text) is not None


class ContentStore:
    """A directory of files named by the SHA-256 of their bytes (and ``suffix``)."""

    def __init__(self, directory: Path, suffix: str = "") -> None:
        self.directory = directory
        self.suffix = suffix

    def path_for(self, sha256: str, suffix: str | None = None) -> Path:
        if not is_sha256(sha256):
            raise ValueError(f"not a SHA-256 (64 lowercase hex digits): {sha256!r}")
        return self.directory / f"{sha256}{self.suffix if suffix is None else suffix}"

    def put(self, sha256: str, data: bytes, suffix: str | None = None) -> Path:
        """Store ``data`` under ``sha256`` (which the caller has checked) and return its path; raise ``OSError``.

        Each writer has a temporary file of its own (:func:`tempfile.mkstemp` in the directory): two writers of
        the same bytes at once — the same receipt filed twice — each write and rename their own, and neither
        truncates a file the other is about to rename. The first rename is the file; the second replaces it with
        the same bytes."""
        path = self.path_for(sha256, suffix)
        if path.exists() and path.stat().st_size == len(data):
            return path  # already stored (its name is its hash): no need to read the data again
        if hashlib.sha256(data).hexdigest() != sha256:
            raise ValueError("the bytes do not match their SHA-256")
        self.directory.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=self.directory, prefix=f".{path.name}.", suffix=".tmp")
        tmp = Path(name)
        try:
            with open(fd, "wb") as fh:
                os.fchmod(fh.fileno(), 0o640)
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except OSError:
            tmp.unlink(missing_ok=True)  # a full disk must not also keep the half-written file
            raise
        directory = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
        return path
