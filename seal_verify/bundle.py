"""Reading a bundle: the zip's members by path, checked against the layout of ``docs/evidence.md``, and strict
JSON (UTF-8, no duplicate keys) for its records."""

from __future__ import annotations

import json
import re
import struct
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from seal_protocol import canonical_json
from seal_verify.errors import BundleUnreadable

FIXED_PATHS = frozenset(
    {
        "README.txt",
        "manifest.json",
        "manifest.sig",
        "case.json",
        "events.jsonl",
        "events-meta.jsonl",
        "snapshots.jsonl",
        "alarms.jsonl",
        "commands.jsonl",
        "removal.jsonl",
        "audit.jsonl",
        "audit-meta.jsonl",
        "log/checkpoint.txt",
        "log/proofs.jsonl",
        "log/consistency.jsonl",
        "log/checkpoint.tsr",
        "log/tsa-chain.pem",
        "log/key.txt",
        "report.pdf",
    }
)
PATTERNS = (
    re.compile(r"seals/[a-z0-9][a-z0-9_-]{0,63}\.json"),
    re.compile(r"snapshots/[0-9a-f]{64}\.jpg"),
    re.compile(r"removal/[0-9a-f]{64}\.(?:pdf|jpg|png)"),
)
#: A member larger than this is not something the server writes (a snapshot is at most a few MiB).
MAX_MEMBER_BYTES = 256 * 1024 * 1024
#: The bundle is read into memory: more than this in all (as the zip's directory declares it, which also bounds what
#: is decompressed) or more members than this is refused before anything is read (a zip bomb of many members).
#: The bench's case of 10,000 events and 1,000 snapshots is about 60 MiB.
MAX_TOTAL_BYTES = 2 * 1024 * 1024 * 1024
MAX_MEMBERS = 200_000
#: What ``zipfile`` raises on hostile bytes, beyond BadZipFile: NotImplementedError (a RuntimeError) for a "zip
#: version" above 6.3, IndexError and struct.error for a cut extra field, zlib.error for bad deflate data.
ZIP_ERRORS = (OSError, zipfile.BadZipFile, ValueError, EOFError, RuntimeError, IndexError, struct.error, zlib.error)
#: A zip local file header (APPNOTE 4.3.7): signature, version, flags, method, time, date, CRC, sizes, name and
#: extra field lengths.
_LOCAL = struct.Struct("<4s2B4HL2L2H")
_LOCAL_SIGNATURE = b"PK\x03\x04"
_DESCRIPTOR = b"PK\x07\x08"


def in_layout(path: str) -> bool:
    return path in FIXED_PATHS or any(p.fullmatch(path) for p in PATTERNS)


@dataclass
class Bundle:
    """The members of a bundle, and what is wrong with the zip itself."""

    files: dict[str, bytes]
    problems: list[str] = field(default_factory=list)

    def get(self, path: str) -> bytes | None:
        return self.files.get(path)

    def under(self, prefix: str) -> dict[str, bytes]:
        return {path: data for path, data in self.files.items() if path.startswith(prefix)}


def read_bundle(source: Path | IO[bytes]) -> Bundle:
    """The bundle at ``source`` (a path, or an open binary file); :class:`BundleUnreadable` if it is no zip."""
    try:
        archive = zipfile.ZipFile(source)
    except ZIP_ERRORS as exc:
        raise BundleUnreadable(f"not a readable zip file: {exc}") from None
    bundle = Bundle({})
    with archive:
        infos = archive.infolist()
        total = sum(info.file_size for info in infos)
        if len(infos) > MAX_MEMBERS or total > MAX_TOTAL_BYTES:
            raise BundleUnreadable(
                f"the zip declares {len(infos)} members of {total} bytes in all, more than a bundle holds "
                f"(at most {MAX_MEMBERS} members, {MAX_TOTAL_BYTES} bytes): not read / 证据包过大，未读取"
            )
        try:
            bundle.problems += unlisted_bytes(archive, infos)
        except ZIP_ERRORS as exc:
            bundle.problems.append(f"the zip's members cannot be located: {exc}")
        for info in infos:
            name = info.filename
            if name in bundle.files:
                bundle.problems.append(f"{name} is in the zip twice")
                continue
            if not name or name != info.orig_filename or info.is_dir() or not in_layout(name):
                # is_dir() fails on an empty name; zipfile cuts a name at a NUL byte (orig_filename keeps it)
                bundle.problems.append(f"{name} is not a path of the bundle's layout")
                continue
            if info.file_size > MAX_MEMBER_BYTES:
                bundle.problems.append(f"{name} is larger than {MAX_MEMBER_BYTES} bytes")
                continue
            try:
                bundle.files[name] = archive.read(info)
            except ZIP_ERRORS as exc:
                bundle.problems.append(f"{name} cannot be read from the zip: {exc}")
    return bundle


def unlisted_bytes(archive: zipfile.ZipFile, infos: list[zipfile.ZipInfo]) -> list[str]:
    """Problems with bytes of the zip that its directory does not describe: data before, between or after the
    members (a hidden entry that a reader going by local headers would show instead), a local header that differs
    from its directory entry, an archive comment. Every byte of a bundle is then covered by what is verified."""
    fp, expected, problems = archive.fp, 0, []
    assert fp is not None
    for info in sorted(infos, key=lambda i: i.header_offset):
        if info.header_offset != expected:
            problems.append(f"bytes {expected}–{info.header_offset} of the zip belong to no member")
        fp.seek(info.header_offset)
        raw = fp.read(_LOCAL.size)
        if len(raw) != _LOCAL.size:
            problems.append(f"{info.filename}: its local header is cut short")
            return problems
        head = _LOCAL.unpack(raw)
        sizes = (head[7], head[8], head[9]) if not info.flag_bits & 0x08 else (info.CRC, -1, -1)
        if (
            head[0] != _LOCAL_SIGNATURE
            or (head[3], head[4], head[5], head[6]) != (info.flag_bits, info.compress_type, *_dos_time(info))
            or sizes[0] != info.CRC
            or sizes[1] not in (-1, info.compress_size, 0xFFFFFFFF)
            or sizes[2] not in (-1, info.file_size, 0xFFFFFFFF)
        ):
            problems.append(f"{info.filename}: its local header is not its directory entry")
        expected = info.header_offset + _LOCAL.size + head[10] + head[11] + info.compress_size
        if info.flag_bits & 0x08:
            fp.seek(expected)
            expected += 16 if fp.read(4) == _DESCRIPTOR else 12
    if expected != archive.start_dir:
        problems.append(f"bytes {expected}–{archive.start_dir} of the zip belong to no member")
    if archive.comment:
        problems.append("the zip has a comment, which a bundle does not")
    return problems


def _dos_time(info: zipfile.ZipInfo) -> tuple[int, int]:
    y, mo, d, h, mi, s = info.date_time
    return (h << 11 | mi << 5 | s // 2, (y - 1980) << 9 | mo << 5 | d)


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for key, value in pairs:
        if key in found:
            raise ValueError(f"the key {key!r} twice")
        found[key] = value
    return found


def load_json(data: bytes) -> Any:
    """Strict JSON: UTF-8, no duplicate keys; :class:`ValueError` otherwise."""
    text = data.decode("utf-8")  # UnicodeDecodeError is a ValueError
    try:
        return json.loads(text, object_pairs_hook=_no_duplicates)
    except RecursionError:
        raise ValueError("it nests too deep") from None


def load_object(data: bytes, what: str, *, canonical: bool = True) -> dict[str, Any]:
    """The JSON object ``data``; :class:`ValueError` unless it is one, and (``canonical``, as every file and line of
    a bundle is) unless ``data`` is its canonical JSON (``seal_protocol.canonical_json``) byte for byte."""
    try:
        value = load_json(data)
    except ValueError as exc:
        raise ValueError(f"{what} is not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ValueError(f"{what} is not a JSON object")
    if canonical and canonical_json(value) != data:
        raise ValueError(f"{what} is not canonical JSON (RFC 8785: sorted keys, no white space, no escapes needed)")
    return value


def split_lines(data: bytes, what: str) -> list[bytes]:
    """The lines of a JSON-lines file (each ends in a newline); :class:`ValueError` if the last does not."""
    if not data:
        return []
    if not data.endswith(b"\n"):
        raise ValueError(f"{what} does not end in a newline")
    return data[:-1].split(b"\n")


def object_lines(data: bytes | None, what: str) -> list[dict[str, Any]]:
    """The JSON objects of a JSON-lines file (none if it is missing)."""
    if data is None:
        return []
    return [load_object(line, f"{what} line {n}") for n, line in enumerate(split_lines(data, what), start=1)]
