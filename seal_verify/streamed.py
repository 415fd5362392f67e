"""A JSON-lines member of the bundle, read from the zip line by line each time it is passed over, never held whole:
the bytes of events.jsonl, events-meta.jsonl and log/proofs.jsonl (about 1.3 KB an event) were the most of what
seal-verify held. The member is read once when the bundle is opened (:func:`scan_member`), as strictly as
:func:`seal_verify.archive.read_member` reads any other (the same bounds, deflate stream and CRC, the same reasons),
which also takes what the checks ask before they pass over it (its size, SHA-256, lines, longest line, JSON values);
each later pass reads it again from the open zip, and fails as unreadable if its bytes are no longer those."""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO

import seal_verify.archive as archive
from seal_verify.errors import BundleUnreadable
from seal_verify.verdict import cut

#: The longest line of a JSON-lines file seal-verify reads, newline excluded. The server writes lines of a few KB
#: (an event's envelope is at most seal_protocol's MAX_ENVELOPE_BYTES, 64 KiB); this is far above, so that what the
#: checks say of a long line (a hostile 16 MiB line of numbers: the number refused) stays theirs, and a line held
#: (as bytes, then as text while it is parsed) is at most this. A longer one (up to a member's 256 MiB without a
#: newline) is refused unread: before, the whole member was held.
MAX_LINE_BYTES = 32 * 1024 * 1024
#: Lines of one JSON-lines file, at most. Each line becomes an object of a few hundred bytes, so 20 million empty
#: lines (19 MiB, 100 KB zipped) took 4 GB; the 256 MiB a member may hold has room for fewer than a million events,
#: audit entries or proofs of a real bundle (the bench's 10,000 events make 10,000 lines of each).
MAX_LINES = 1_000_000
#: What is read from the zip, and inflated, at a time.
_CHUNK = 64 * 1024
_VALUE_MARKS = tuple(bytes([c]) for c in b"{[,:")


@dataclass(frozen=True)
class StreamedMember:
    """A JSON-lines member of the open zip ``fp``, scanned (:func:`scan_member`): its ``size``, ``sha256`` (hex),
    number of newlines, ``longest`` line (newline excluded; the unended last line counted too), whether it ends in a
    newline (or is empty), and ``json_values`` as :func:`seal_verify.bundle.json_values` counts them."""

    name: str
    fp: IO[bytes]
    member: archive.Placed
    size: int
    sha256: str
    newlines: int
    longest: int
    ends_in_newline: bool
    json_values: int

    def chunks(self) -> Iterator[bytes]:
        """Its bytes, a chunk at a time, read again from the zip (:class:`BundleUnreadable` if they are not those
        scanned)."""
        return _chunks(self.fp, self.member)

    def lines(self) -> Iterator[bytes]:
        """Its lines without their newline, each read as it is reached; a last line without a newline is not given
        (:class:`seal_verify.bundle.Lines` refuses such a file first). :class:`BundleUnreadable` past
        :data:`MAX_LINE_BYTES` (the bytes changed since they were scanned)."""
        pending = bytearray()
        for chunk in self.chunks():
            start = 0
            while (end := chunk.find(b"\n", start)) >= 0:
                if pending:
                    pending += chunk[start:end]
                    line = bytes(pending)
                    pending.clear()
                else:
                    line = chunk[start:end]
                if len(line) > MAX_LINE_BYTES:
                    raise _changed(self.name)
                yield line
                start = end + 1
            pending += chunk[start:]
            if len(pending) > MAX_LINE_BYTES:
                raise _changed(self.name)


def scan_member(fp: IO[bytes], member: archive.Placed) -> StreamedMember:
    """Read ``member`` through once, as :func:`seal_verify.archive.read_member` would but a chunk at a time, keeping
    only what :class:`StreamedMember` holds; :class:`BundleUnreadable` where that would raise it."""
    digest, size, newlines, longest, values = hashlib.sha256(), 0, 0, 0, 1
    line, last = 0, b""  # the length of the line being read; the last chunk
    for chunk in _chunks(fp, member):
        digest.update(chunk)
        size += len(chunk)
        newlines += chunk.count(b"\n")
        values += sum(chunk.count(mark) for mark in _VALUE_MARKS)
        for part in chunk.split(b"\n")[:-1] if b"\n" in chunk else ():
            longest, line = max(longest, line + len(part)), 0
        line += len(chunk) - chunk.rfind(b"\n") - 1
        last = chunk or last
    longest = max(longest, line)
    ends = not last or last.endswith(b"\n")
    name = member.info.filename
    return StreamedMember(name, fp, member, size, digest.hexdigest(), newlines, longest, ends, values + newlines)


def _chunks(fp: IO[bytes], member: archive.Placed) -> Iterator[bytes]:
    """The member's bytes, a chunk at a time: stored, or inflated from a deflate stream that must end exactly at its
    declared size (never more than a chunk past it is made), with its CRC; the reasons of ``read_member``."""
    info = member.info
    name = cut(info.filename)
    stored = archive.check_sizes(info)
    inflate = None if stored else zlib.decompressobj(-zlib.MAX_WBITS)
    at, left, made, crc = member.data_at, info.compress_size, 0, 0
    if fp.seek(0, 2) < at + left:  # as read_member, which reads them all first
        raise BundleUnreadable(f"{name} is cut short")
    while left:
        fp.seek(at)  # each pass keeps its own place: two members may be read in turn
        raw = fp.read(min(_CHUNK, left))
        if not raw:
            raise BundleUnreadable(f"{name} is cut short")
        at, left = at + len(raw), left - len(raw)
        pending = False  # zlib may hold output made of input it has taken in whole (a long match's copy)
        while raw or pending:
            if inflate is None:
                data, raw = raw, b""
            else:
                try:
                    data = inflate.decompress(raw, _CHUNK)
                except zlib.error as exc:
                    raise BundleUnreadable(f"{name} is not deflate data: {exc}") from None
                raw = inflate.unconsumed_tail
                pending = not raw and not inflate.eof and len(data) == _CHUNK
            made += len(data)
            if made > info.file_size:
                raise _not_exact(info.filename, info.file_size)
            crc = zlib.crc32(data, crc)
            if data:
                yield data
            if inflate is not None and inflate.eof:
                break
        if inflate is not None and inflate.eof and (left or inflate.unused_data or raw):
            raise _not_exact(info.filename, info.file_size)
    if (inflate is not None and not inflate.eof) or made != info.file_size:
        raise _not_exact(info.filename, info.file_size)
    if crc != info.CRC:
        raise BundleUnreadable(f"{name}: its CRC is not its bytes'")


def _not_exact(filename: str, size: int) -> BundleUnreadable:
    return BundleUnreadable(f"{cut(filename)}: its deflate stream is not exactly its {size} bytes")


def _changed(name: str) -> BundleUnreadable:
    return BundleUnreadable(f"{cut(name)}: its bytes changed while it was verified / 校验期间文件内容被改动")


class Lines:
    """The lines of a JSON-lines file as :func:`split_lines` takes them (its :class:`ValueError` raised here), cut
    out one at a time as they are iterated: a pass over a file of a million lines holds one of them, not a list."""

    def __init__(self, data: bytes | StreamedMember, what: str) -> None:
        if isinstance(data, StreamedMember):
            ends, self._count, longest = data.ends_in_newline, data.newlines, data.longest
        else:
            ends, self._count = not data or data.endswith(b"\n"), data.count(b"\n")
            longest = 0  # the lines of a file held whole (in tests) are not bounded
        if not ends:
            raise ValueError(f"{what} does not end in a newline")
        if self._count > MAX_LINES:
            raise ValueError(f"{what} has more than {MAX_LINES:,} lines, more than a bundle holds: not read / 行数过多")
        if longest > MAX_LINE_BYTES:
            raise ValueError(
                f"{what} has a line of {longest:,} bytes, longer than a bundle's lines (at most {MAX_LINE_BYTES:,}): "
                f"not read / 单行过长，未读取"
            )
        self._data = data

    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> Iterator[bytes]:
        if isinstance(self._data, StreamedMember):
            yield from self._data.lines()
            return
        data, start = self._data, 0
        while start < len(data):
            end = data.index(b"\n", start)
            yield data[start:end]
            start = end + 1
