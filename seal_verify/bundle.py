"""Reading a bundle: the zip's members by path, checked against the layout of ``docs/evidence.md``, and strict
JSON (UTF-8, no duplicate keys) for its records."""

from __future__ import annotations

import json
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

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
    except (OSError, zipfile.BadZipFile, ValueError) as exc:
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
        for info in infos:
            name = info.filename
            if name in bundle.files:
                bundle.problems.append(f"{name} is in the zip twice")
                continue
            if info.is_dir() or not in_layout(name):
                bundle.problems.append(f"{name} is not a path of the bundle's layout")
                continue
            if info.file_size > MAX_MEMBER_BYTES:
                bundle.problems.append(f"{name} is larger than {MAX_MEMBER_BYTES} bytes")
                continue
            try:
                bundle.files[name] = archive.read(info)
            except (OSError, zipfile.BadZipFile, ValueError, EOFError, RuntimeError) as exc:
                bundle.problems.append(f"{name} cannot be read from the zip: {exc}")
    return bundle


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
    return json.loads(text, object_pairs_hook=_no_duplicates)


def load_object(data: bytes, what: str) -> dict[str, Any]:
    try:
        value = load_json(data)
    except ValueError as exc:
        raise ValueError(f"{what} is not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ValueError(f"{what} is not a JSON object")
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
