"""Reading a bundle: the zip's members by path, checked against the layout of ``docs/evidence.md``, and strict
JSON (UTF-8, no duplicate keys) for its records."""

from __future__ import annotations

import json
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import seal_verify.archive as archive
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
        "quarantine.jsonl",
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
    re.compile(r"refused/[0-9a-f]{64}\.jpg"),
    re.compile(r"removal/[0-9a-f]{64}\.(?:pdf|jpg|png)"),
)
#: Lines of one JSON-lines file, at most. Each line becomes an object of a few hundred bytes, so 20 million empty
#: lines (19 MiB, 100 KB zipped) took 4 GB; the 256 MiB a member may hold has room for fewer than a million events,
#: audit entries or proofs of a real bundle (the bench's 10,000 events make 10,000 lines of each).
MAX_LINES = 1_000_000
#: Strings, arrays and objects in the bundle's JSON, at most. Parsed, each costs 50-230 bytes of memory for as few as
#: 2-3 bytes of the file ('[],' is a list of 56 bytes), so 120 MiB of '[],' took over 3 GB. A real bundle holds about
#: 60 per event (its line, meta line and proof): this admits some 600,000 events, as the member bound does, and
#: bounds the memory of any bundle by what a real one of that size needs.
MAX_JSON_VALUES = 40_000_000


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
    """The bundle at ``source`` (a path to a regular file, or an open binary file); :class:`BundleUnreadable` if it
    is no zip, or larger than a bundle."""
    if not isinstance(source, Path):
        return _read(source)
    try:
        if not source.exists():
            raise BundleUnreadable(f"{source}: no such file / 文件不存在")
        if not source.is_file():  # stat first: opening a FIFO would wait for a writer, /dev/zero has no end
            raise BundleUnreadable(
                f"{source} is not a regular file (a directory, a device, a pipe): give the zip file as exported / "
                "不是普通文件"
            )
        with source.open("rb") as fp:
            return _read(fp)
    except OSError as exc:
        raise BundleUnreadable(f"cannot read {source}: {exc.strerror}") from None


def _read(fp: IO[bytes]) -> Bundle:
    try:
        return _read_zip(fp)
    except MemoryError:  # within the bounds, but more than this machine has: no traceback, a reason
        raise BundleUnreadable("not enough memory to hold the bundle / 内存不足，无法读取证据包") from None


def _read_zip(fp: IO[bytes]) -> Bundle:
    try:
        problems = archive.check_end(fp, fp.seek(0, 2))
        zipped = zipfile.ZipFile(fp)
    except BundleUnreadable:
        raise
    except archive.ZIP_ERRORS as exc:
        raise BundleUnreadable(f"not a readable zip file: {exc}") from None
    bundle = Bundle({}, problems)
    with zipped:
        infos = zipped.infolist()
        total = sum(info.file_size for info in infos)
        if len(infos) > archive.MAX_MEMBERS or total > archive.MAX_TOTAL_BYTES:
            raise archive.too_large(f"the zip declares {len(infos)} members of {total} bytes in all")
        try:
            placed, problems = archive.place_members(fp, infos, zipped.start_dir)
        except archive.ZIP_ERRORS as exc:
            placed, problems = [], [f"the zip's members cannot be located: {exc}"]
        bundle.problems += problems
        where = {id(member.info): member for member in placed}
        seen: set[str] = set()
        for info in infos:
            _add(bundle, fp, info, where.get(id(info)), seen)
    values = sum(json_values(data) for path, data in bundle.files.items() if path.endswith((".json", ".jsonl")))
    if values > MAX_JSON_VALUES:
        raise BundleUnreadable(
            f"the bundle's JSON holds about {values:,} strings, arrays and objects, more than a bundle holds (at most "
            f"{MAX_JSON_VALUES:,}): not parsed / 证据包过大，未解析"
        )
    return bundle


def json_values(data: bytes) -> int:
    """About how many strings, arrays and objects the JSON ``data`` holds (quotes and brackets inside strings count
    too: more, never fewer), counted without parsing it."""
    return data.count(b"{") + data.count(b"[") + data.count(b'"') // 2


def _add(bundle: Bundle, fp: IO[bytes], info: zipfile.ZipInfo, member: archive.Placed | None, seen: set[str]) -> None:
    """Read ``info``'s member into ``bundle`` if it is where its local header says (``member``; the problem is
    already stated if not) and nothing about it is wrong; else state what is."""
    name = info.filename
    if name in seen:
        bundle.problems.append(f"{name} is in the zip twice")
        return
    seen.add(name)
    if not name or name != info.orig_filename or info.is_dir() or not in_layout(name):
        # is_dir() fails on an empty name; zipfile cuts a name at a NUL byte (orig_filename keeps it)
        bundle.problems.append(f"{name} is not a path of the bundle's layout")
        return
    problem = archive.member_problem(info)
    if problem is not None:
        bundle.problems.append(problem)
    if problem is not None or member is None:
        return
    try:
        bundle.files[name] = archive.read_member(fp, member)
    except (BundleUnreadable, *archive.ZIP_ERRORS) as exc:
        bundle.problems.append(f"{name} cannot be read from the zip: {exc}")


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
    """The lines of a JSON-lines file (each ends in a newline); :class:`ValueError` if the last does not, or if
    there are more than MAX_LINES (counted before they are split)."""
    if not data:
        return []
    if not data.endswith(b"\n"):
        raise ValueError(f"{what} does not end in a newline")
    if data.count(b"\n") > MAX_LINES:
        raise ValueError(f"{what} has more than {MAX_LINES:,} lines, more than a bundle holds: not read / 行数过多")
    return data[:-1].split(b"\n")


def object_lines(data: bytes | None, what: str) -> list[dict[str, Any]]:
    """The JSON objects of a JSON-lines file (none if it is missing)."""
    if data is None:
        return []
    return [load_object(line, f"{what} line {n}") for n, line in enumerate(split_lines(data, what), start=1)]
