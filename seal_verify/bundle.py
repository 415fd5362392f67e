"""Reading a bundle: the zip's members by path, checked against the layout of ``docs/evidence.md``, and strict
JSON (UTF-8, no duplicate keys) for its records."""

from __future__ import annotations

import json
import re
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import seal_verify.archive as archive
import seal_verify.finder as finder
from seal_protocol import canonical_json
from seal_verify.errors import BundleUnreadable
from seal_verify.streamed import MAX_LINES as MAX_LINES  # the exporter writes within it (server.export.limits)
from seal_verify.streamed import Lines, StreamedMember, scan_member
from seal_verify.verdict import cut, shown

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
#: JSON values (objects, arrays, strings, numbers, true, false, null) and object keys in the bundle's JSON, at most.
#: Parsed, each costs up to some 60 bytes of memory for as few as 2-4 bytes of the file ('[],' is a list of 56 bytes,
#: '1000,' an int of 28, '"ab",' a string of 51, each with 8 for its place), so 120 MiB of '[],' took over 3 GB.
#: A real bundle holds about 70 per event (its line, meta line and proof, keys and numbers included): this admits
#: some 550,000 events, more than the member bound lets log/proofs.jsonl hold proofs for, and bounds the memory of any
#: bundle by what a real one of that size needs.
MAX_JSON_VALUES = 40_000_000
#: The integers RFC 8785 writes as they are written here: an IEEE 754 double holds them exactly.
MAX_SAFE_INTEGER = 2**53 - 1
#: The last character of the Basic Multilingual Plane before the surrogates: up to it, the order of code points (by
#: which keys are sorted here) and of UTF-16 code units (by which RFC 8785 sorts them) are the same.
_LAST_SAFE_KEY_CHAR = "\ud7ff"


def in_layout(path: str) -> bool:
    return path in FIXED_PATHS or any(p.fullmatch(path) for p in PATTERNS)


@dataclass
class Bundle:
    """The members of a bundle, and what is wrong with the zip itself. ``files`` holds each member's bytes but the
    JSON-lines files', which ``streamed`` reads line by line from the open zip (:meth:`jsonl`). ``unread``: members
    of the layout that are in the zip but were not read (how they are packed fails a rule of ``docs/evidence.md``),
    with why; a check that asks for one (:meth:`get`, :meth:`jsonl`, :meth:`has`, :meth:`under`) is marked in
    ``touched``, so that the verdict says it was not checked rather than that the file is missing. ``notes``: what
    was ignored (folder entries of a re-zipped bundle, what macOS Finder adds)."""

    files: dict[str, bytes]
    streamed: dict[str, StreamedMember] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    unread: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    touched: set[str] = field(default_factory=set)

    def get(self, path: str) -> bytes | None:
        if path.endswith(".jsonl"):
            raise TypeError(f"{path} is read line by line: Bundle.jsonl")
        if path in self.unread:
            self.touched.add(path)
        return self.files.get(path)

    def jsonl(self, path: str) -> StreamedMember | None:
        """The JSON-lines file at ``path``, to pass over line by line (:class:`Lines`); ``None`` if missing."""
        if path in self.unread:
            self.touched.add(path)
        return self.streamed.get(path)

    def has(self, path: str) -> bool:
        return (self.jsonl(path) if path.endswith(".jsonl") else self.get(path)) is not None

    def paths(self) -> set[str]:
        return set(self.files) | set(self.streamed)

    def under(self, prefix: str) -> dict[str, bytes]:
        self.touched.update(path for path in self.unread if path.startswith(prefix))
        return {path: data for path, data in self.files.items() if path.startswith(prefix)}


@contextmanager
def open_bundle(source: Path | IO[bytes]) -> Iterator[Bundle]:
    """The bundle at ``source`` (a path to a regular file, or an open binary file), its JSON-lines files read from
    it while the context lasts (``source`` a file: it is closed after); :class:`BundleUnreadable` if it is no zip, or
    larger than a bundle."""
    if not isinstance(source, Path):
        yield _read(source)
        return
    try:
        if not source.exists():
            raise BundleUnreadable(f"{source}: no such file / 文件不存在")
        if not source.is_file():  # stat first: opening a FIFO would wait for a writer, /dev/zero has no end
            raise BundleUnreadable(
                f"{source} is not a regular file (a directory, a device, a pipe): give the zip file as exported / "
                "不是普通文件"
            )
        fp = source.open("rb")
    except OSError as exc:
        raise BundleUnreadable(f"cannot read {source}: {exc.strerror}") from None
    with fp:
        try:
            bundle = _read(fp)
        except OSError as exc:
            raise BundleUnreadable(f"cannot read {source}: {exc.strerror}") from None
        yield bundle


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
    bundle = Bundle({}, problems=problems)
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
        names = {info.filename for info in infos if info.filename == info.orig_filename}  # the others: refused
        layout_names = {name for name in names if in_layout(name)}
        folders = {name.rpartition("/")[0] + "/" for name in layout_names} - {"/"}
        context = _Names(names, layout_names, folders)
        kinds = {i.filename: _add(bundle, fp, i, where.get(id(i)), seen, context) for i in infos}
        ignored = sorted(name for name, kind in kinds.items() if kind == "folder")
        if ignored:
            bundle.notes.append(
                f"忽略 {len(ignored)} 个文件夹条目（重新打包的 zip 会添加，不含内容）/ {len(ignored)} folder "
                f"entries ignored ({', '.join(ignored)}): re-zipping adds them, they hold no bytes"
            )
        finder_entries = sorted(name for name, kind in kinds.items() if kind == "finder")
        if finder_entries:
            bundle.notes.append(finder.finder_note(finder_entries))
    values = sum(json_values(data) for path, data in bundle.files.items() if path.endswith(".json"))
    values += sum(member.json_values for member in bundle.streamed.values())
    if values > MAX_JSON_VALUES:
        raise BundleUnreadable(
            f"the bundle's JSON holds up to {values:,} JSON values (objects, arrays, strings, numbers, true, false, "
            f"null and keys), more than a bundle holds (at most {MAX_JSON_VALUES:,}): not parsed / 证据包过大，未解析"
        )
    return bundle


def json_values(data: bytes) -> int:
    """At most how many values and object keys the JSON (or JSON lines) ``data`` holds, counted without parsing it.
    Each but a document's own value comes after a ``{`` or ``[`` (the first in it), a ``,`` or a ``:`` (an object's
    value): these counted, and one per line, are never fewer (those inside strings count too: more)."""
    return sum(data.count(c) for c in (b"{", b"[", b",", b":")) + data.count(b"\n") + 1


@dataclass(frozen=True)
class _Names:
    """The zip's entry names (``every``), those that are paths of the layout (``layout``), and the layout's folders
    that hold members (``folders``: ``log/`` …)."""

    every: set[str]
    layout: set[str]
    folders: set[str]


def _add(
    bundle: Bundle,
    fp: IO[bytes],
    info: zipfile.ZipInfo,
    member: archive.Placed | None,
    seen: set[str],
    names: _Names,
) -> str | None:
    """Read ``info``'s member into ``bundle`` if it is where its local header says (``member``; the problem is
    already stated if not) and nothing about it is wrong; else state what is, and keep a member of the layout that
    was not read in ``bundle.unread``. An entry that is ignored returns its kind: ``"folder"``, an empty entry of a
    folder holding members of the layout (``names.folders``), as ``zip -r`` and ``shutil.make_archive`` write;
    ``"finder"``, what macOS Finder's Compress adds (:mod:`seal_verify.finder`), never read as a member."""
    name = info.filename
    if name != info.orig_filename:  # zipfile cut it at a NUL byte (or, on Windows, made its backslashes slashes)
        bundle.problems.append(
            f"the entry named {shown(info.orig_filename)} is refused: a name with a NUL byte or a backslash is read "
            f"otherwise by other readers (here as {shown(name)}) / 条目名称含 NUL 字节或反斜杠，各工具读法不同，拒绝"
        )
        return None
    if name in seen:
        bundle.problems.append(f"{cut(name)} is in the zip twice")
        return None
    seen.add(name)
    if name in names.folders:
        problem = archive.directory_problem(info)
        if problem is not None:
            bundle.problems.append(problem)
        return "folder" if problem is None and member is not None else None  # misplaced: place_members stated it
    if finder.is_finder_name(name):
        return _finder_entry(bundle, fp, info, member, names)
    if not name or info.is_dir() or not in_layout(name):  # is_dir() fails on an empty name
        bundle.problems.append(f"{cut(name)} is not a path of the bundle's layout")
        return None
    problem = archive.member_problem(info)
    if problem is not None:
        bundle.problems.append(problem)
    elif member is None:  # place_members stated why
        problem = "its local header is not its directory entry, or it is not where the zip's directory says"
    else:
        try:
            if name.endswith(".jsonl"):
                bundle.streamed[name] = scan_member(fp, member)
            else:
                bundle.files[name] = archive.read_member(fp, member)
            return None
        except (BundleUnreadable, *archive.ZIP_ERRORS) as exc:
            problem = f"{name} cannot be read from the zip: {exc}"
            bundle.problems.append(problem)
    bundle.unread[name] = problem
    return None


def _finder_entry(
    bundle: Bundle, fp: IO[bytes], info: zipfile.ZipInfo, member: archive.Placed | None, names: _Names
) -> str | None:
    """``"finder"`` if ``info`` is exactly what Finder adds and its bytes (read, bounded, never kept) are of its
    kind; else the problem is stated (a misplaced entry's by place_members) and ``None``."""
    problem = finder.finder_problem(info, names.every, names.folders, names.layout)
    if problem is None and member is not None and not info.filename.endswith("/"):
        try:
            problem = finder.content_problem(info.filename, archive.read_member(fp, member))
        except (BundleUnreadable, *archive.ZIP_ERRORS) as exc:
            problem = f"{cut(info.filename)} cannot be read from the zip: {exc}"
    if problem is not None:
        bundle.problems.append(problem)
    return "finder" if problem is None and member is not None else None


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for key, value in pairs:
        if key in found:
            raise ValueError(f"the key {shown(key)} twice")
        found[key] = value
    return found


class _NotCanonical(ValueError):
    """Valid JSON, but outside what the bundle's canonical JSON holds (a fraction or exponent, a large integer, a
    key RFC 8785 sorts in another order)."""


def _canonical_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    for key, _value in pairs:
        if key and max(key) > _LAST_SAFE_KEY_CHAR:
            raise _NotCanonical(
                f"the key {shown(key)} holds a character above U+D7FF, whose order RFC 8785 (by UTF-16 code units) "
                "and the bundle's (by code points) may not agree"
            )
    return _no_duplicates(pairs)


def _no_fraction(text: str) -> Any:
    raise _NotCanonical(f"the number {cut(text)} has a fraction or an exponent; a bundle holds integers only")


def _safe_integer(text: str) -> int:
    if len(text) > len(str(MAX_SAFE_INTEGER)) + 1 or abs(int(text)) > MAX_SAFE_INTEGER:  # the length first
        raise _NotCanonical(f"the integer {cut(text)} is outside ±(2**53 - 1), where RFC 8785 writes it otherwise")
    return int(text)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def load_json(data: bytes, *, canonical: bool = False) -> Any:
    """Strict JSON: UTF-8, no duplicate keys, no NaN or Infinity; :class:`ValueError` otherwise. ``canonical``: also
    only what RFC 8785 writes as ``seal_protocol.canonical_json`` does (integers within ±(2**53 - 1), keys without a
    character above U+D7FF), refused as the parser meets it: a file of a million numbers is not built first."""
    text = data.decode("utf-8")  # UnicodeDecodeError is a ValueError
    hooks: dict[str, Any] = {"object_pairs_hook": _no_duplicates, "parse_constant": _no_constant}
    if canonical:
        hooks.update(object_pairs_hook=_canonical_object, parse_float=_no_fraction, parse_int=_safe_integer)
    try:
        return json.loads(text, **hooks)
    except RecursionError:
        raise ValueError("it nests too deep") from None


def load_object(data: bytes, what: str, *, canonical: bool = True) -> dict[str, Any]:
    """The JSON object ``data``; :class:`ValueError` unless it is one, and (``canonical``, as every file and line of
    a bundle is) unless ``data`` is its canonical JSON (``seal_protocol.canonical_json``, RFC 8785 for the values
    :func:`load_json` admits) byte for byte."""
    try:
        value = load_json(data, canonical=canonical)
    except _NotCanonical as exc:
        raise ValueError(f"{what} is not canonical JSON: {exc}") from None
    except ValueError as exc:
        raise ValueError(f"{what} is not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ValueError(f"{what} is not a JSON object")
    try:
        same = not canonical or canonical_json(value) == data
    except UnicodeEncodeError:  # an escaped lone surrogate ("\\ud800"): no character, nothing RFC 8785 writes
        raise ValueError(f"{what} is not canonical JSON: a string holds a lone surrogate") from None
    if not same:
        raise ValueError(f"{what} is not canonical JSON (RFC 8785: sorted keys, no white space, no escapes needed)")
    return value


def split_lines(data: bytes | StreamedMember, what: str) -> list[bytes]:
    """The lines of a JSON-lines file (each ends in a newline); :class:`ValueError` if the last does not, or if
    there are more than MAX_LINES (counted before they are split) or one is longer than MAX_LINE_BYTES."""
    return list(Lines(data, what))


def object_lines(data: bytes | StreamedMember | None, what: str) -> list[dict[str, Any]]:
    """The JSON objects of a JSON-lines file (none if it is missing)."""
    return list(ObjectLines(data, what))


class ObjectLines:
    """The JSON objects of a JSON-lines file (none if it is missing), each parsed as it is iterated. Every line is
    parsed once here, so that a bad one is the :class:`ValueError` :func:`object_lines` raises before any is used."""

    def __init__(self, data: bytes | StreamedMember | None, what: str) -> None:
        self._lines, self._what = Lines(data or b"", what), what
        for _value in self:
            pass

    def __len__(self) -> int:
        return len(self._lines)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for n, line in enumerate(self._lines, start=1):
            yield load_object(line, f"{self._what} line {n}")
