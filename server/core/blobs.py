"""What a content store keeps its objects in (:class:`ObjectBackend`: a directory, a bucket), and an object being
read (:class:`Blob`). See :mod:`server.core.object_store`."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

#: Bytes read at a time from a stored object.
CHUNK_BYTES = 64 * 1024


@dataclass
class Blob:
    """A stored object being read: its size and its bytes, a chunk at a time (``chunks`` closes what it reads when
    it is exhausted or closed)."""

    size: int
    chunks: Iterator[bytes]


class ObjectBackend(Protocol):
    """Where a content store keeps its objects, by name. Raises :class:`OSError` (a
    :class:`~server.errors.ContentStoreUnavailable` when the store does not answer)."""

    #: Where the objects are, for log lines and errors (never a secret).
    description: str

    def put_once(self, name: str, data: bytes) -> bool:
        """Store ``data`` as ``name`` unless an object of that name exists: ``True`` if written, ``False`` if one
        was there (it is left as it is)."""
        ...

    def open(self, name: str) -> Blob | None:
        """The object ``name``, or ``None`` if there is none."""
        ...

    def remove(self, name: str) -> None:
        """Remove the object ``name`` (nothing if there is none). Only for an object no record refers to: what a
        refused filing wrote (:mod:`server.removal.proof_files`)."""
        ...

    def size(self, name: str) -> int | None:
        """The size of the object ``name``, or ``None`` if there is none."""
        ...

    def check(self) -> None:
        """Raise :class:`~server.errors.ContentStoreUnavailable` unless objects can be written and read now."""
        ...
