"""Content-addressed stores: bytes named by their SHA-256 (snapshots, removal proofs), each written once.

A :class:`ContentStore` names an object ``<sha256><suffix>`` and keeps it in an :class:`ObjectBackend`: a directory
(:class:`~server.core.files.DirectoryObjects`, the default) or a bucket of an S3-compatible store
(:class:`~server.core.s3_objects.S3Objects`). A backend writes an object only if none of its name exists — the
bucket with ``PUT … If-None-Match: *`` — and otherwise says so; the store then reads the object back and hashes it.
Whoever holds the store's write access could have put other bytes under a name before us: such an object is a
:class:`~server.errors.ContentMismatch` (logged, counted through ``on_mismatch``), never taken for ours. Readers that
hand an object on as evidence (the export) use :meth:`ContentStore.read`, which checks the hash likewise.

Errors are :class:`OSError`\\s, as a disk's are: :class:`~server.errors.ContentStoreUnavailable` when the store does
not answer, so that every caller keeps the one path it has for a failing disk.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterator
from pathlib import Path

from server.core.blobs import Blob, ObjectBackend
from server.core.files import DirectoryObjects, is_sha256, make_store_root
from server.errors import ContentMismatch, ContentStoreError

logger = logging.getLogger(__name__)


class ContentStore:
    """Objects named by the SHA-256 of their bytes and ``suffix``, in ``backend`` (a :class:`~pathlib.Path` is a
    directory, as before there were other backends, made here if missing: a tool's or a test's store. The court's
    own directories are :class:`DirectoryObjects` given by :class:`~server.stores.Stores`, made at setup and never
    again, so that an unmounted disk is an error, not an empty directory). ``kind`` names the store in log lines
    and the metric."""

    def __init__(
        self,
        backend: ObjectBackend | Path,
        suffix: str = "",
        *,
        kind: str = "content",
        on_mismatch: Callable[[str], None] | None = None,
    ) -> None:
        if isinstance(backend, Path):
            make_store_root(backend)
            backend = DirectoryObjects(backend)
        self.backend: ObjectBackend = backend
        self.suffix = suffix
        self.kind = kind
        self._on_mismatch = on_mismatch

    def name_for(self, sha256: str, suffix: str | None = None) -> str:
        if not is_sha256(sha256):
            raise ValueError(f"not a SHA-256 (64 lowercase hex digits): {sha256!r}")
        return f"{sha256}{self.suffix if suffix is None else suffix}"

    def put(self, sha256: str, data: bytes, suffix: str | None = None) -> bool:
        """Store ``data`` under ``sha256`` (which must be its hash): ``True`` if this call wrote it; raise
        :class:`OSError`. Storing it again is a no-op (``False``) — once the object there has been read back and
        found to be these bytes: if it holds others, :class:`~server.errors.ContentMismatch`."""
        name = self.name_for(sha256, suffix)
        if hashlib.sha256(data).hexdigest() != sha256:
            raise ValueError("the bytes do not match their SHA-256")
        if self.backend.put_once(name, data):
            return True
        found = self._hash(name)
        if found is None:  # gone between the two requests (or a conditional write still under way elsewhere)
            raise ContentStoreError(f"{self.kind} {name} in {self.backend.description} exists and yet cannot be read")
        if found != sha256:
            self._mismatch(name, found, "written")
        return False

    def remove(self, sha256: str, suffix: str | None = None) -> None:
        """Remove the object (raise :class:`OSError`): only one that no record refers to, and that no writer in
        progress is about to refer to — the caller makes sure (:func:`server.removal.proof_files.discard_unfiled`)."""
        self.backend.remove(self.name_for(sha256, suffix))

    def read(self, sha256: str, suffix: str | None = None) -> bytes | None:
        """The object's bytes, checked against ``sha256``; ``None`` if there is none; :class:`ContentMismatch` if
        they are other bytes."""
        name = self.name_for(sha256, suffix)
        blob = self.backend.open(name)
        if blob is None:
            return None
        data = b"".join(blob.chunks)
        found = hashlib.sha256(data).hexdigest()
        if found != sha256:
            self._mismatch(name, found, "read")
        return data

    def open(self, sha256: str, suffix: str | None = None) -> Blob | None:
        """The object as a stream (to serve it), or ``None``. Its hash is checked as it is read: when the last chunk
        has been read, other bytes are logged and counted (they have been sent by then)."""
        name = self.name_for(sha256, suffix)
        blob = self.backend.open(name)
        if blob is None:
            return None
        return Blob(blob.size, self._checked(name, sha256, blob.chunks))

    def hash_of(self, sha256: str, suffix: str | None = None) -> str | None:
        """The SHA-256 of the object stored under ``sha256`` as read now (to show it), or ``None`` if there is none;
        another hash is logged and counted as well."""
        name = self.name_for(sha256, suffix)
        found = self._hash(name)
        if found is not None and found != sha256:
            self._count_mismatch(name, found, "shown")
        return found

    def size(self, sha256: str, suffix: str | None = None) -> int | None:
        return self.backend.size(self.name_for(sha256, suffix))

    def _hash(self, name: str) -> str | None:
        blob = self.backend.open(name)
        if blob is None:
            return None
        digest = hashlib.sha256()
        for chunk in blob.chunks:
            digest.update(chunk)
        return digest.hexdigest()

    def _checked(self, name: str, sha256: str, chunks: Iterator[bytes]) -> Iterator[bytes]:
        digest = hashlib.sha256()
        for chunk in chunks:
            digest.update(chunk)
            yield chunk
        if digest.hexdigest() != sha256:
            self._count_mismatch(name, digest.hexdigest(), "served")

    def _mismatch(self, name: str, found: str, how: str) -> None:
        self._count_mismatch(name, found, how)
        raise ContentMismatch(
            f"{self.kind} {name} in {self.backend.description} holds other bytes (SHA-256 {found}): not the "
            "object its name promises — put there by someone else or damaged; look into it, do not delete it"
        )

    def _count_mismatch(self, name: str, found: str, how: str) -> None:
        logger.error(
            "%s %s in %s holds other bytes than its name promises (SHA-256 %s), found when it was %s",
            self.kind,
            name,
            self.backend.description,
            found,
            how,
        )
        if self._on_mismatch is not None:
            self._on_mismatch(self.kind)
