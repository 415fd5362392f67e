"""A genuine bundle unzipped and zipped again — by Info-ZIP's ``zip -r`` (its defaults and its other ways: stored,
data descriptors, ZIP64 blocks, to a pipe), by ``shutil.make_archive``, and as 7-Zip and Windows' compressed folders
write a zip — verifies as the bundle exported (review: every check failed on ``zip -r``'s folder entries and its local
time fields, longer than its directory's, and the verdict claimed ``manifest.json`` and ``log/key.txt`` "missing" and
the log key "not the pinned one"). A re-zip that changes a member's bytes, adds a member or a folder of its own, or
whose local header says another CRC still fails; a member in the zip but not read is "not checked", never "missing"."""

from __future__ import annotations

import io
import os
import shutil
import struct
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from seal_verify import verify_bundle
from seal_verify.verdict import BundleVerdict
from tests.verify.local_zip import by_local_headers
from tests.verify.world import Exported, export_once

ROOT = Path(__file__).resolve().parents[2]
INFO_ZIP = shutil.which("zip") is not None and shutil.which("unzip") is not None
needs_info_zip = pytest.mark.skipif(
    not INFO_ZIP, reason="Info-ZIP's zip and unzip are not installed (scripts/setup.sh installs them)"
)
NOT_CHECKED = "未检查："

#: Info-ZIP's ways of zipping the unzipped folder (the shell, in it): each adds folder entries (but -D), time (0x5455,
#: longer in the local header) and owner (0x7875) fields (but -X).
INFO_ZIP_WAYS = {
    "zip -r, its defaults": "zip -q -r ../again.zip .",
    "zip -r -X -D: no extra fields, no folder entries": "zip -q -r -X -D ../again.zip .",
    "zip -r -0: stored": "zip -q -r -0 ../again.zip .",
    "zip -r -fd: data descriptors, the size in the local header": "zip -q -r -fd ../again.zip .",
    "zip -r -fz: ZIP64 blocks after the time and owner blocks": "zip -q -r -fz ../again.zip .",
    "zip -r - . | cat: to a pipe, an empty member stored with a data descriptor": "zip -q -r - . | cat > ../again.zip",
}


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory, migrated_sqlite: Path) -> Exported:
    return export_once(tmp_path_factory.mktemp("bundle"), migrated_sqlite)


def unpacked(exported: Exported, tmp_path: Path) -> Path:
    """The bundle as ``unzip case.zip -d case`` leaves it (zipfile's extraction without ``unzip``)."""
    (tmp_path / "case.zip").write_bytes(exported.data)
    folder = tmp_path / "case"
    if INFO_ZIP:
        subprocess.run(["unzip", "-q", str(tmp_path / "case.zip"), "-d", str(folder)], check=True)
    else:
        with zipfile.ZipFile(tmp_path / "case.zip") as archive:
            archive.extractall(folder)
    return folder


def info_zip(folder: Path, command: str = INFO_ZIP_WAYS["zip -r, its defaults"]) -> Path:
    subprocess.run(command, shell=True, cwd=folder, check=True)
    return folder.parent / "again.zip"


def seal_verify(path: Path, exported: Exported) -> subprocess.CompletedProcess[str]:
    """``seal-verify PATH --log-key KEY`` as a user runs it."""
    return subprocess.run(
        [sys.executable, "-m", "seal_verify", str(path), "--log-key", exported.log_key],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


def assert_trusted(path: Path, exported: Exported) -> BundleVerdict:
    done = seal_verify(path, exported)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "Verdict: every check holds." in done.stdout and "✘" not in done.stdout, done.stdout
    verdict = verify_bundle(path, log_key=exported.log_key)
    assert verdict.trusted and not verdict.warnings, verdict.text()
    streamed = by_local_headers(path.read_bytes())  # a streaming reader reads the same files, and empty folders
    assert {name: data for name, data in streamed.items() if not name.endswith("/")} == exported.members
    assert all(streamed[name] == b"" for name in streamed if name.endswith("/"))
    return verdict


@needs_info_zip
@pytest.mark.parametrize("way", sorted(INFO_ZIP_WAYS))
def test_a_bundle_rezipped_by_info_zip_is_trusted(exported: Exported, tmp_path: Path, way: str) -> None:
    verdict = assert_trusted(info_zip(unpacked(exported, tmp_path), INFO_ZIP_WAYS[way]), exported)
    folders = [] if "-D" in INFO_ZIP_WAYS[way] else ["log/", "seals/", "snapshots/"]
    notes = verdict.check("bundle").notes
    assert bool(folders) == any(f"({', '.join(folders)})" in note for note in notes), notes


def test_a_bundle_rezipped_by_shutil_make_archive_is_trusted(exported: Exported, tmp_path: Path) -> None:
    folder = unpacked(exported, tmp_path)
    again = Path(shutil.make_archive(str(tmp_path / "again"), "zip", folder))
    verdict = assert_trusted(again, exported)
    assert any("folder entries ignored (log/, seals/, snapshots/)" in n for n in verdict.check("bundle").notes)


class _Pipe(io.RawIOBase):
    """Written only, as a pipe: zipfile then puts each member's CRC and sizes after its data (a data descriptor)."""

    def __init__(self) -> None:
        self.data = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, b: object) -> int:
        view = memoryview(b)  # type: ignore[arg-type]
        self.data += view
        return view.nbytes


NTFS_TIMES = struct.pack("<HHLHH3Q", 0x000A, 32, 0, 1, 24, *[133_000_000_000_000_000] * 3)


def other_zipper(members: dict[str, bytes], *, extra: bytes, pipe: bool) -> bytes:
    """The members as 7-Zip writes them (``pipe`` false: NTFS times in each local header and directory entry) or as a
    zip written to a pipe with MS-DOS attributes (``pipe``: data descriptors, as Windows' compressed folders): both
    with an entry of each folder first (MS-DOS attribute 0x10), files with the archive bit (0x20)."""
    out: io.BytesIO | _Pipe = _Pipe() if pipe else io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for folder in sorted({name.rpartition("/")[0] + "/" for name in members if "/" in name}):
            info = zipfile.ZipInfo(folder, date_time=(2026, 12, 4, 9, 30, 0))
            info.external_attr, info.extra = 0x10, extra
            archive.writestr(info, b"")
        for name, data in members.items():
            info = zipfile.ZipInfo(name, date_time=(2026, 12, 4, 9, 30, 0))
            info.compress_type, info.external_attr, info.extra = zipfile.ZIP_DEFLATED, 0x20, extra
            with archive.open(info, "w") as dest:
                dest.write(data)
    return bytes(out.data) if isinstance(out, _Pipe) else out.getvalue()


@pytest.mark.parametrize("pipe", [False, True], ids=["NTFS times, as 7-Zip", "data descriptors, as to a pipe"])
def test_a_bundle_zipped_as_other_zippers_write_is_trusted(exported: Exported, tmp_path: Path, pipe: bool) -> None:
    path = tmp_path / "again.zip"
    path.write_bytes(other_zipper(exported.members, extra=b"" if pipe else NTFS_TIMES, pipe=pipe))
    assert_trusted(path, exported)


def _drop_last_event(folder: Path) -> None:
    events = folder / "events.jsonl"
    events.write_bytes(b"".join(events.read_bytes().splitlines(keepends=True)[:-1]))


def _repaint_a_snapshot(folder: Path) -> None:
    picture = sorted((folder / "snapshots").iterdir())[0]
    picture.write_bytes(picture.read_bytes()[:-1] + b"\x00")


#: Edits of the unzipped folder before it is zipped again, and what the verdict must say.
EDITS: dict[str, tuple[Callable[[Path], None], str, str]] = {
    "an event dropped": (_drop_last_event, "manifest_files", "events.jsonl: changed"),
    "a snapshot's bytes changed": (_repaint_a_snapshot, "manifest_files", "changed"),
    "a member added in the layout": (
        lambda f: (f / "seals" / "seal-x.json").write_bytes(b"{}"),
        "manifest_files",
        "seals/seal-x.json: in the bundle but not in the manifest",
    ),
    "a file added outside the layout": (
        lambda f: (f / "notes.txt").write_bytes(b"x"),
        "bundle",
        "notes.txt is not a path of the bundle's layout",
    ),
    "a folder of its own": (
        lambda f: (f / "extra").mkdir(),
        "bundle",
        "extra/ is not a path of the bundle's layout",
    ),
}


@pytest.mark.parametrize("zipper", ["zip -r", "shutil.make_archive"])
@pytest.mark.parametrize("edit", sorted(EDITS))
def test_a_rezip_that_changes_the_bundle_fails(exported: Exported, tmp_path: Path, edit: str, zipper: str) -> None:
    change, check, problem = EDITS[edit]
    folder = unpacked(exported, tmp_path)
    change(folder)
    if zipper == "zip -r" and not INFO_ZIP:
        pytest.skip("Info-ZIP's zip and unzip are not installed (scripts/setup.sh installs them)")
    again = (
        info_zip(folder) if zipper == "zip -r" else Path(shutil.make_archive(str(tmp_path / "again"), "zip", folder))
    )
    done = seal_verify(again, exported)
    assert done.returncode == 1, done.stdout[-4000:]
    verdict = verify_bundle(again, log_key=exported.log_key)
    assert any(problem in p for p in verdict.check(check).problems), verdict.text()
    if check != "bundle":
        assert not verdict.check("bundle").problems, verdict.text()  # the packing is fine, the bytes are not


def _with_folder_entry(exported: Exported, name: str, data: bytes, attribute: int) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        info = zipfile.ZipInfo(name, date_time=(2026, 12, 4, 9, 30, 0))
        info.external_attr = attribute
        archive.writestr(info, data)
        for member, content in exported.members.items():
            archive.writestr(member, content, compress_type=zipfile.ZIP_DEFLATED)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("data", "attribute", "problem"),
    [
        (b"hidden", 0o40755 << 16 | 0x10, "log/ is a folder's entry with content (6 bytes)"),
        (b"", 0o120777 << 16, "log/ is not a folder"),
        (b"", 0x08, "log/ is not a folder"),
    ],
    ids=["with bytes", "a symbolic link", "a volume label"],
)
def test_a_folder_entry_that_is_no_empty_folder_fails(
    exported: Exported, data: bytes, attribute: int, problem: str
) -> None:
    verdict = verify_bundle(io.BytesIO(_with_folder_entry(exported, "log/", data, attribute)), log_key=exported.log_key)
    assert any(problem in p for p in verdict.check("bundle").problems), verdict.text()
    assert verify_bundle(
        io.BytesIO(_with_folder_entry(exported, "log/", b"", 0o40755 << 16 | 0x10)), log_key=exported.log_key
    ).trusted


def _local_crc_changed(data: bytes, name: str) -> bytes:
    """``data`` with member ``name``'s local header claiming another CRC (its directory entry as it was)."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        info = archive.getinfo(name)
    changed = bytearray(data)
    struct.pack_into("<L", changed, info.header_offset + 14, info.CRC ^ 1)
    return bytes(changed)


@pytest.mark.parametrize("member", ["log/key.txt", "events.jsonl", "manifest.json"])
def test_a_member_in_the_zip_but_not_read_is_not_checked_never_missing(
    exported: Exported, tmp_path: Path, member: str
) -> None:
    """Its local header differs (another CRC): the bundle fails, the member is not read, and every check that needed
    it says so — not that it is missing, that the events are none, or that the log key is not the pinned one."""
    path = tmp_path / "again.zip"
    path.write_bytes(_local_crc_changed(exported.data, member))
    verdict = verify_bundle(path, log_key=exported.log_key)
    assert verdict.check("bundle").problems == [f"{member}: its local header is not its directory entry"]
    assert not verdict.ok
    text = verdict.text()
    for untrue in ("missing", "not the pinned one", "0 of 0", "is not a JSON object", "no key"):
        assert untrue not in text, text
    needing = {
        "log/key.txt": {"manifest_files", "log_key"},
        "events.jsonl": {"manifest_files", "event_signatures", "hash_chains", "event_meta", "inclusion"},
        "manifest.json": {"manifest_files", "manifest_signature", "checkpoint", "audit"},
    }[member]
    for name in needing | {c for c in verdict.failed if c != "bundle"}:
        problems = verdict.check(name).problems
        assert len(problems) == 1 and problems[0].startswith(NOT_CHECKED), (name, text)
        assert f"not checked: {member}, which it needs, is in the zip but was not read" in problems[0], text
    if member != "manifest.json":  # what needs no such member is still checked, and holds
        assert verdict.check("manifest_signature").status.value == "ok", text


def test_a_log_key_that_could_not_be_read_is_not_called_another_than_the_pinned_one(exported: Exported) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in exported.members.items():
            archive.writestr(name, b"not a key\n" if name == "log/key.txt" else data)
    problems = verify_bundle(io.BytesIO(buffer.getvalue()), log_key=exported.log_key).check("log_key").problems
    assert not any("not the pinned one" in p for p in problems), problems
    assert any("not compared with the pinned key" in p for p in problems), problems
