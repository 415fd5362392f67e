"""A genuine bundle unzipped on macOS and zipped again with Finder's "Compress" (the files selected in the folder):
Finder (``ditto -c -k --sequesterRsrc``) adds ``__MACOSX/`` with an AppleDouble file ``__MACOSX/<folder>/._<name>``
beside each file and folder that has extended attributes (every one, once the quarantine flag of a downloaded zip is
on them), and the ``.DS_Store`` files of the folders it showed. It verifies as the bundle exported, those entries
named in a note of ``bundle`` (review: the verdict failed them as paths outside the layout). They are never read
as members: ``__MACOSX/events.jsonl`` is not ``events.jsonl``, an AppleDouble file whose partner is not in the zip,
or that is no AppleDouble file, fails, and a forged bundle compressed by Finder still fails."""

from __future__ import annotations

import io
import os
import struct
import subprocess
import sys
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest

from seal_verify import verify_bundle
from tests.verify.world import Exported, export_once

ROOT = Path(__file__).resolve().parents[2]
STAMP = (2026, 12, 4, 9, 30, 0)
QUARANTINE = b"0083;6760a1b2;Safari;"


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory, migrated_sqlite: Path) -> Exported:
    return export_once(tmp_path_factory.mktemp("bundle"), migrated_sqlite)


def appledouble() -> bytes:
    """An AppleDouble file (RFC 1740) as ditto writes one: magic 0x00051607, version 2, the "Mac OS X" filler, two
    entries — the Finder info (9), followed by the extended attributes ("ATTR": here com.apple.quarantine), and an
    empty resource fork (2)."""
    name = b"com.apple.quarantine\x00"
    attr_at = 0x32 + 32 + 2 + 36 + 2 + 12 + len(name)  # where the attribute's value starts in the file
    attrs = b"ATTR" + struct.pack(">5L", 0, attr_at + len(QUARANTINE), attr_at, len(QUARANTINE), 0) + bytes(12)
    attrs += struct.pack(">HH", 0, 1)[2:] + struct.pack(">LLHB", attr_at, len(QUARANTINE), 0, len(name)) + name
    finder_info = (bytes(32) + bytes(2) + attrs).ljust(attr_at - 0x32, b"\x00") + QUARANTINE
    header = b"\x00\x05\x16\x07" + struct.pack(">L", 0x00020000) + b"Mac OS X        " + struct.pack(">H", 2)
    entries = struct.pack(">3L", 9, 0x32, len(finder_info)) + struct.pack(">3L", 2, 0x32 + len(finder_info), 0)
    return header + entries + finder_info


DS_STORE = b"\x00\x00\x00\x01Bud1" + bytes(range(256)) * 8 + bytes(6148 - 8 - 2048)


def unpacked(exported: Exported, folder: Path) -> Path:
    """The bundle extracted (as Archive Utility does), and shown in Finder: a ``.DS_Store`` at the top and in
    ``snapshots/``."""
    with zipfile.ZipFile(io.BytesIO(exported.data)) as archive:
        archive.extractall(folder)
    (folder / ".DS_Store").write_bytes(DS_STORE)
    (folder / "snapshots" / ".DS_Store").write_bytes(DS_STORE)
    return folder


class _Pipe(io.RawIOBase):
    """Written only: zipfile then writes data descriptors, as ditto does."""

    def __init__(self) -> None:
        self.data = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, b: object) -> int:
        view = memoryview(b)  # type: ignore[arg-type]
        self.data += view
        return view.nbytes


def finder_compress(
    folder: Path, *, more: Callable[[zipfile.ZipFile], None] = lambda archive: None, without: str = ""
) -> bytes:
    """The files of ``folder`` selected and compressed by Finder: each file or folder's entry followed by its
    AppleDouble file under ``__MACOSX/`` (the ``__MACOSX`` folders' entries before their first), deflated with data
    descriptors, Unix modes. ``more`` writes entries of its own at the end; ``without``: an entry of Finder's left
    out."""
    out = _Pipe()
    made: set[str] = set()

    def entry(archive: zipfile.ZipFile, name: str, data: bytes | None) -> None:
        if name == without:
            return
        info = zipfile.ZipInfo(name, date_time=STAMP)
        if data is None:
            info.external_attr = (0o40755 << 16) | 0x10
            archive.writestr(info, b"")
            return
        info.compress_type, info.external_attr = zipfile.ZIP_DEFLATED, 0o100644 << 16
        with archive.open(info, "w") as dest:
            dest.write(data)

    def sidecar(archive: zipfile.ZipFile, relative: str) -> None:
        parent, _, base = relative.rpartition("/")
        for level in ["__MACOSX/", *([f"__MACOSX/{parent}/"] if parent else [])]:
            if level not in made:
                made.add(level)
                entry(archive, level, None)
        entry(archive, f"__MACOSX/{parent + '/' if parent else ''}._{base}", appledouble())

    with zipfile.ZipFile(out, "w") as archive:
        for path in sorted(folder.rglob("*")):
            relative = path.relative_to(folder).as_posix()
            entry(archive, relative + "/" if path.is_dir() else relative, None if path.is_dir() else path.read_bytes())
            sidecar(archive, relative)
        more(archive)
    return bytes(out.data)


def seal_verify(data: bytes, tmp_path: Path, exported: Exported) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "Archive.zip"
    path.write_bytes(data)
    return subprocess.run(
        [sys.executable, "-m", "seal_verify", str(path), "--log-key", exported.log_key],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


def test_the_finder_layout_is_what_finder_writes(exported: Exported, tmp_path: Path) -> None:
    """The test's zip holds what a Finder zip holds: ``__MACOSX/``, AppleDouble ``._`` files, ``.DS_Store``."""
    with zipfile.ZipFile(io.BytesIO(finder_compress(unpacked(exported, tmp_path / "case")))) as archive:
        names = set(archive.namelist())
        assert {"__MACOSX/", "__MACOSX/log/", "__MACOSX/log/._key.txt", "__MACOSX/._log", ".DS_Store"} <= names
        assert {"snapshots/.DS_Store", "__MACOSX/snapshots/._.DS_Store", "__MACOSX/._README.txt"} <= names
        assert archive.read("__MACOSX/log/._key.txt")[:4] == bytes.fromhex("00051607")
        assert all(info.flag_bits & 0x08 for info in archive.infolist() if not info.is_dir())
    assert set(exported.members) <= names


def test_a_bundle_compressed_by_finder_is_trusted_and_names_what_it_ignored(exported: Exported, tmp_path: Path) -> None:
    data = finder_compress(unpacked(exported, tmp_path / "case"))
    done = seal_verify(data, tmp_path, exported)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "Verdict: every check holds." in done.stdout and "✘" not in done.stdout, done.stdout
    assert "macOS Finder entries ignored" in done.stdout and "__MACOSX/log/._key.txt" in done.stdout, done.stdout
    verdict = verify_bundle(io.BytesIO(data), log_key=exported.log_key)
    assert verdict.trusted and not verdict.warnings, verdict.text()
    notes = verdict.check("bundle").notes
    finder_notes = [n for n in notes if "macOS Finder entries ignored" in n]
    assert len(finder_notes) == 1, notes
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        extra = [n for n in archive.namelist() if n.startswith("__MACOSX/") or n.endswith(".DS_Store")]
    assert f"{len(extra)} macOS Finder entries ignored" in finder_notes[0]
    assert "snapshots/.DS_Store" in finder_notes[0] and "__MACOSX/._case.json" in finder_notes[0]


def test_a_forged_bundle_compressed_by_finder_still_fails(exported: Exported, tmp_path: Path) -> None:
    folder = unpacked(exported, tmp_path / "case")
    events = folder / "events.jsonl"
    events.write_bytes(b"".join(events.read_bytes().splitlines(keepends=True)[:-1]))
    verdict = verify_bundle(io.BytesIO(finder_compress(folder)), log_key=exported.log_key)
    assert any("events.jsonl: changed" in p for p in verdict.check("manifest_files").problems), verdict.text()
    assert not verdict.check("bundle").problems and not verdict.ok, verdict.text()


def _write(name: str, data: bytes, *, attribute: int = 0o100644 << 16, extra: bytes = b"") -> Callable:
    def more(archive: zipfile.ZipFile) -> None:
        info = zipfile.ZipInfo(name, date_time=STAMP)
        info.compress_type, info.external_attr, info.extra = zipfile.ZIP_DEFLATED, attribute, extra
        archive.writestr(info, data)

    more.__name__ = name  # Finder's own entry of that name is left out
    return more


def _unicode_path(name: str, real: str) -> bytes:
    """Info-ZIP's Unicode Path extra field: ``unzip`` extracts the entry ``real`` under ``name``."""
    body = b"\x01" + struct.pack("<L", zlib.crc32(real.encode())) + name.encode()
    return struct.pack("<HH", 0x7075, len(body)) + body


#: Entries added to a Finder zip of the genuine bundle, and the problem of ``bundle`` each must give.
HOSTILE: dict[str, tuple[Callable, str]] = {
    "__MACOSX/events.jsonl, not Finder's": (
        _write("__MACOSX/events.jsonl", b"forged\n"),
        "__MACOSX/events.jsonl is not a path of the bundle's layout",
    ),
    "an AppleDouble file of no member": (
        _write("__MACOSX/._notes.txt", appledouble()),
        "__MACOSX/._notes.txt is not a path of the bundle's layout, nor an AppleDouble file",
    ),
    "an AppleDouble name holding other bytes": (
        _write("__MACOSX/._audit.jsonl", b"{}\n"),
        "__MACOSX/._audit.jsonl is not an AppleDouble file",
    ),
    "a path out of __MACOSX": (
        _write("__MACOSX/../._events.jsonl", appledouble()),
        "__MACOSX/../._events.jsonl is not a path of the bundle's layout",
    ),
    "a .DS_Store outside the layout's folders": (
        _write("extra/.DS_Store", DS_STORE),
        "extra/.DS_Store is not a path of the bundle's layout",
    ),
    "a .DS_Store that is a link": (
        _write("log/.DS_Store", b"../events.jsonl", attribute=0o120777 << 16),
        "log/.DS_Store is not a regular file",
    ),
    "a .DS_Store holding other bytes": (
        _write("seals/.DS_Store", b"{}"),
        "seals/.DS_Store is not a Finder .DS_Store file",
    ),
    "an AppleDouble entry that unzip extracts as events.jsonl": (
        _write(
            "__MACOSX/._events.jsonl", appledouble(), extra=_unicode_path("events.jsonl", "__MACOSX/._events.jsonl")
        ),
        "__MACOSX/._events.jsonl has extra fields 0x7075",
    ),
    "__MACOSX/ of another folder": (
        _write("__MACOSX/extra/", b"", attribute=(0o40755 << 16) | 0x10),
        "__MACOSX/extra/ is not a folder Finder adds",
    ),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_an_entry_finder_does_not_write_fails(exported: Exported, tmp_path: Path, case: str) -> None:
    more, problem = HOSTILE[case]
    data = finder_compress(unpacked(exported, tmp_path / "case"), more=more, without=more.__name__)
    verdict = verify_bundle(io.BytesIO(data), log_key=exported.log_key)
    assert any(problem in p for p in verdict.check("bundle").problems), verdict.text()
    assert not verdict.ok
    assert not verdict.check("event_signatures").problems, verdict.text()  # the real events were read, no other


@pytest.mark.parametrize("shadow", ["__MACOSX/events.jsonl", "__MACOSX/._events.jsonl"])
def test_a_finder_entry_never_stands_in_for_a_member(exported: Exported, tmp_path: Path, shadow: str) -> None:
    """The events moved under ``__MACOSX/``, the bundle's own ``events.jsonl`` gone: nothing reads them as the
    events; the manifest's ``events.jsonl`` is missing."""
    folder = unpacked(exported, tmp_path / "case")
    (folder / "events.jsonl").unlink()
    data = finder_compress(folder, more=_write(shadow, exported.members["events.jsonl"]))
    verdict = verify_bundle(io.BytesIO(data), log_key=exported.log_key)
    assert any(shadow in p for p in verdict.check("bundle").problems), verdict.text()
    assert any("events.jsonl" in p and "missing" in p for p in verdict.check("manifest_files").problems), verdict.text()
    assert not verdict.ok


def test_finder_entries_are_bounded_as_members(exported: Exported, tmp_path: Path) -> None:
    """An AppleDouble file is read only within the member bound, and its deflate stream must be its size."""
    data = bytearray(finder_compress(unpacked(exported, tmp_path / "case")))
    with zipfile.ZipFile(io.BytesIO(bytes(data))) as archive:
        info = archive.getinfo("__MACOSX/._case.json")
    at = data.find(b"PK\x01\x02")
    while data[at + 46 : at + 46 + len(info.filename)] != info.filename.encode():
        at = data.find(b"PK\x01\x02", at + 4)
    struct.pack_into("<L", data, at + 16, info.CRC ^ 1)  # its directory's CRC: no longer its bytes'
    verdict = verify_bundle(io.BytesIO(bytes(data)), log_key=exported.log_key)
    assert not verdict.ok, verdict.text()
    assert any("__MACOSX/._case.json" in p for p in verdict.check("bundle").problems), verdict.text()
