"""The zip around a bundle, made hostile without the log key: a member whose compressed stream holds more than its
directory entry declares (a zip bomb past the declared-size bounds), a compression other than deflate, names and
file kinds that ``unzip`` takes from fields seal-verify did not read, an end record that other readers count
differently, a directory of more entries than a bundle holds, and a "bundle" that is no file at all."""

from __future__ import annotations

import bz2
import io
import os
import resource
import struct
import subprocess
import sys
import tracemalloc
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest

from seal_verify import verify_bundle
from seal_verify.archive import MAX_MEMBERS
from tests.verify.world import Exported, export_once

STAMP = (2026, 12, 4, 9, 30, 0)
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory, migrated_sqlite: Path) -> Exported:
    return export_once(tmp_path_factory.mktemp("bundle"), migrated_sqlite)


def rezip(members: dict[str, bytes], edit: Callable[[zipfile.ZipInfo], None] = lambda info: None) -> bytes:
    """The members zipped as the server zips them (deflate, ``rw-r--r--``), each entry first passed to ``edit``."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            info = zipfile.ZipInfo(name, date_time=STAMP)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            edit(info)
            archive.writestr(info, data)
    return buffer.getvalue()


def central(data: bytes, name: str) -> int:
    """The offset of member ``name``'s directory entry."""
    at = data.find(b"PK\x01\x02")
    while data[at + 46 : at + 46 + len(name)] != name.encode():
        at = data.find(b"PK\x01\x02", at + 4)
    return at


def with_stream(members: dict[str, bytes], name: str, stream: bytes, *, method: int, declared: bytes) -> bytes:
    """The bundle with member ``name``'s compressed bytes replaced by ``stream`` of ``method``, its local header and
    directory entry declaring the size and CRC of ``declared`` (what a reader that stops at the declared size sees)."""

    def stored(info: zipfile.ZipInfo) -> None:
        if info.filename == name:
            info.compress_type = zipfile.ZIP_STORED

    data = bytearray(rezip({**members, name: stream}, stored))
    entry = central(bytes(data), name)
    local = struct.unpack_from("<L", data, entry + 42)[0]
    crc, size = zlib.crc32(declared), len(declared)
    for head, (at_method, at_crc, at_size) in ((local, (8, 14, 22)), (entry, (10, 16, 24))):
        struct.pack_into("<H", data, head + at_method, method)
        struct.pack_into("<L", data, head + at_crc, crc)
        struct.pack_into("<L", data, head + at_size, size)
    return bytes(data)


def deflated(data: bytes, *more: bytes) -> bytes:
    squeeze = zlib.compressobj(9, zlib.DEFLATED, -15)
    return b"".join([squeeze.compress(data), *(squeeze.compress(part) for part in more), squeeze.flush()])


def crashed(verdict_text: str, problems: list[str]) -> list[str]:
    return [p for p in problems if p.startswith("could not be checked")]


def test_a_member_whose_stream_inflates_past_its_declared_size_is_refused_with_memory_to_spare(
    exported: Exported,
) -> None:
    """case.json's deflate stream goes on for 64 MiB of zeros after its real bytes, the size and CRC declared are the
    real file's: zipfile inflated the whole stream in one call (1 GiB at most), then cut it at the declared size and
    the bundle verified. Inflating stops one byte past the declared size now."""
    real = exported.members["case.json"]
    stream = deflated(real, *[bytes(2**20)] * 64)
    bomb = with_stream(exported.members, "case.json", stream, method=zipfile.ZIP_DEFLATED, declared=real)
    assert len(bomb) < len(exported.data) + 2**17
    tracemalloc.start()
    try:
        verdict = verify_bundle(io.BytesIO(bomb), log_key=exported.log_key)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert not verdict.ok
    assert any("case.json" in p for p in verdict.check("bundle").problems), verdict.text()
    assert peak < 32 * 2**20, f"{peak / 2**20:.0f} MiB to read a bundle of {len(bomb) / 2**20:.1f} MiB"


@pytest.mark.parametrize(
    "stream",
    [
        pytest.param(lambda real: deflated(real) + b"hidden", id="bytes after the end of the deflate stream"),
        pytest.param(lambda real: deflated(real, b"hidden"), id="the stream inflates to more than declared"),
        pytest.param(lambda real: deflated(real[:-5]), id="the stream inflates to less than declared"),
        pytest.param(lambda real: deflated(real)[:-3], id="the stream is cut short"),
        pytest.param(lambda real: real, id="stored bytes declared as deflate"),
    ],
)
def test_a_member_whose_stream_is_not_exactly_its_declared_bytes_fails_the_bundle(
    exported: Exported, stream: Callable[[bytes], bytes]
) -> None:
    real = exported.members["case.json"]
    data = with_stream(exported.members, "case.json", stream(real), method=zipfile.ZIP_DEFLATED, declared=real)
    verdict = verify_bundle(io.BytesIO(data), log_key=exported.log_key)
    assert not verdict.ok
    assert any("case.json" in p for p in verdict.check("bundle").problems), verdict.text()
    assert not crashed(verdict.text(), [p for c in verdict.checks for p in c.problems])


def test_a_bzip2_stream_of_gigabytes_behind_a_small_declared_size_is_refused_unread(exported: Exported) -> None:
    """bzip2 (method 12) puts 1 GiB of zeros in under a kilobyte, and zipfile inflates it without any bound: it ran
    out of memory with a traceback. A bundle is deflated (docs/evidence.md): other methods are refused."""
    real = exported.members["case.json"]
    squeeze = bz2.BZ2Compressor(9)
    stream = squeeze.compress(real) + b"".join(squeeze.compress(bytes(2**20)) for _ in range(16)) + squeeze.flush()
    data = with_stream(exported.members, "case.json", stream, method=zipfile.ZIP_BZIP2, declared=real)
    tracemalloc.start()
    try:
        verdict = verify_bundle(io.BytesIO(data), log_key=exported.log_key)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert not verdict.ok
    assert any("case.json" in p and "method 12" in p for p in verdict.check("bundle").problems), verdict.text()
    assert peak < 8 * 2**20, f"{peak / 2**20:.0f} MiB"


@pytest.mark.parametrize("method", [zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA])
def test_a_bundle_zipped_with_another_compression_fails(exported: Exported, method: int) -> None:
    def other(info: zipfile.ZipInfo) -> None:
        info.compress_type = method

    verdict = verify_bundle(io.BytesIO(rezip(exported.members, other)), log_key=exported.log_key)
    assert "bundle" in verdict.failed, verdict.text()
    assert verify_bundle(io.BytesIO(rezip(exported.members)), log_key=exported.log_key).trusted


def _unicode_path(shown: dict[str, str]) -> Callable[[zipfile.ZipInfo], None]:
    """Info-ZIP's Unicode Path extra field (0x7075): unzip extracts the member under this name instead."""

    def edit(info: zipfile.ZipInfo) -> None:
        if info.filename in shown:
            field = b"\x01" + struct.pack("<L", zlib.crc32(info.filename.encode())) + shown[info.filename].encode()
            info.extra = struct.pack("<HH", 0x7075, len(field)) + field

    return edit


def _attribute(name: str, attribute: int) -> Callable[[zipfile.ZipInfo], None]:
    def edit(info: zipfile.ZipInfo) -> None:
        if info.filename == name:
            info.external_attr = attribute

    return edit


def _comment(info: zipfile.ZipInfo) -> None:
    if info.filename == "case.json":
        info.comment = b"see also"


def _block(kind: int, data: bytes) -> bytes:
    return struct.pack("<HH", kind, len(data)) + data


def _extra_field(extra: bytes) -> Callable[[zipfile.ZipInfo], None]:
    def edit(info: zipfile.ZipInfo) -> None:
        if info.filename == "case.json":
            info.extra = extra

    return edit


def _end_record(offset: int, value: int) -> Callable[[bytes], bytes]:
    def edit(data: bytes) -> bytes:
        end = data.rfind(b"PK\x05\x06")
        return data[: end + offset] + struct.pack("<H", value) + data[end + offset + 2 :]

    return edit


def _fewer_entries(data: bytes) -> bytes:
    end = data.rfind(b"PK\x05\x06")
    count = struct.unpack_from("<H", data, end + 10)[0]
    return data[: end + 8] + struct.pack("<HH", count - 1, count - 1) + data[end + 12 :]


def _first_disk(data: bytes) -> bytes:
    at = central(data, "case.json") + 34  # the disk number where the member starts
    return data[:at] + b"\x01\x00" + data[at + 2 :]


#: Each verifies as it is written by zipfile, which ignores the field, and reads as another bundle to a reader that
#: does not (Info-ZIP unzip extracts 0x7075 names, makes symlinks, counts the end record's entries).
DISGUISES: dict[str, tuple[Callable[[zipfile.ZipInfo], None], Callable[[bytes], bytes]]] = {
    "events and alarms swapped by Unicode Path fields": (
        _unicode_path({"events.jsonl": "alarms.jsonl", "alarms.jsonl": "events.jsonl"}),
        lambda d: d,
    ),
    "a Unicode Path field that leaves the folder": (_unicode_path({"case.json": "../case.json"}), lambda d: d),
    # ASi Unix (0x756e): a mode and a link's target, which some unzips make the member
    "an extra field of a link": (
        _extra_field(_block(0x756E, bytes(4) + b"\xff\xa1" + bytes(8) + b"/etc")),
        lambda d: d,
    ),
    "an extra field of no known kind": (_extra_field(_block(0x4242, b"x")), lambda d: d),
    # a time stamp (0x5455) is kept, but one longer than three times has room for a hidden local header
    "a time stamp field of 64 bytes": (_extra_field(_block(0x5455, b"\x01" + bytes(63))), lambda d: d),
    "two time stamp fields": (_extra_field(2 * _block(0x5455, b"\x01" + bytes(4))), lambda d: d),
    "a member that is a symbolic link": (_attribute("README.txt", 0o120777 << 16), lambda d: d),
    "a member that is a directory (MS-DOS attribute)": (_attribute("case.json", 0o644 << 16 | 0x10), lambda d: d),
    "a member that is a directory (Unix mode)": (_attribute("case.json", 0o40755 << 16), lambda d: d),
    "a member with a comment": (_comment, lambda d: d),
    "an end record that counts one entry fewer": (lambda i: None, _fewer_entries),
    "an end record of disk 1": (lambda i: None, _end_record(4, 1)),
    "an end record that declares a comment it lacks": (lambda i: None, _end_record(20, 9)),
    "a member that starts on disk 1": (lambda i: None, _first_disk),
}


@pytest.mark.parametrize("disguise", sorted(DISGUISES))
def test_a_zip_that_other_readers_read_as_other_files_fails_the_bundle(exported: Exported, disguise: str) -> None:
    edit, after = DISGUISES[disguise]
    data = after(rezip(exported.members, edit))
    verdict = verify_bundle(io.BytesIO(data), log_key=exported.log_key)
    assert "bundle" in verdict.failed, verdict.text()
    assert not crashed(verdict.text(), [p for c in verdict.checks for p in c.problems])


def test_a_directory_of_more_entries_than_a_bundle_holds_is_refused_before_it_is_parsed() -> None:
    """zipfile made a ZipInfo of every entry before the member bound was checked: about 500 bytes of memory for each
    entry of 47 bytes (a 100 MB file took 1 GB, and ran out of memory with a traceback)."""
    content = b"{}"
    local = struct.pack("<4s2B4HL2L2H", b"PK\x03\x04", 20, 0, 0, 0, 0, 0x21, zlib.crc32(content), 2, 2, 1, 0)
    count = MAX_MEMBERS + 50_000
    head = struct.Struct("<4s4B4HL2L5H2L")
    entries = b"".join(
        head.pack(b"PK\x01\x02", 20, 3, 20, 0, 0, 0, 0, 0x21, zlib.crc32(content), 2, 2, 1, 0, 0, 0, 0, 0, 0) + b"x"
        for _ in range(count)
    )
    first = local + b"x" + content
    end = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, 0xFFFF, 0xFFFF, len(entries), len(first), 0)
    tracemalloc.start()
    try:
        verdict = verify_bundle(io.BytesIO(first + entries + end))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert any("more than a bundle holds" in p for p in verdict.check("bundle").problems), verdict.text()
    assert peak < 3 * len(entries), f"{peak / 2**20:.0f} MiB for a directory of {len(entries) / 2**20:.0f} MiB"


def test_a_bundle_that_is_no_regular_file_is_refused_unread(tmp_path: Path) -> None:
    """/dev/zero was read to its (missing) end by zipfile until memory ran out (24 GB before the kernel killed it);
    a FIFO nobody writes blocked for ever; a directory was 'not a readable zip file: Is a directory'. Run as a user
    runs it, in a process of bounded memory and time, so that a failure is one of this test."""
    fifo = tmp_path / "case.zip"
    os.mkfifo(fifo)

    def bounded() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (2**30, 2**30))

    for path in (Path("/dev/zero"), fifo, tmp_path):
        try:
            done = subprocess.run(
                [sys.executable, "-m", "seal_verify", str(path)],
                capture_output=True,
                text=True,
                timeout=30,
                preexec_fn=bounded,
                env={**os.environ, "PYTHONPATH": str(ROOT)},
            )
        except subprocess.TimeoutExpired:
            pytest.fail(f"seal-verify {path} did not return")
        assert done.returncode == 1, (path, done.returncode, done.stderr[-2000:])
        assert "not a regular file" in done.stdout and "Traceback" not in done.stderr, (path, done.stderr[-2000:])


def zip64_end(data: bytes, *, entries_delta: int = 0) -> bytes:
    """The zip with a ZIP64 end record and locator before its end record, whose fields then say "see ZIP64" (as
    zipfile writes a zip of 65,535 members or more); ``entries_delta`` added to the ZIP64 record's count."""
    end = data.rfind(b"PK\x05\x06")
    _, _, _, on_disk, entries, length, offset, _ = struct.unpack_from("<4s4H2LH", data, end)
    record = struct.pack(
        "<4sQ2H2L4Q", b"PK\x06\x06", 44, 45, 45, 0, 0, on_disk + entries_delta, entries + entries_delta, length, offset
    )
    locator = struct.pack("<4sLQL", b"PK\x06\x07", 0, end, 1)
    saturated = struct.pack("<4s4H2LH", b"PK\x05\x06", 0xFFFF, 0xFFFF, 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0)
    return data[:end] + record + locator + saturated


def test_a_zip64_end_record_is_read_and_must_agree(exported: Exported) -> None:
    assert verify_bundle(io.BytesIO(zip64_end(exported.data)), log_key=exported.log_key).trusted
    verdict = verify_bundle(io.BytesIO(zip64_end(exported.data, entries_delta=-1)), log_key=exported.log_key)
    assert any("counts" in p for p in verdict.check("bundle").problems), verdict.text()


@pytest.mark.parametrize(
    "name", ["../README.txt", "/case.json", "seals/../case.json", "case.json/", "log\\key.txt", "./case.json", "C:/x"]
)
def test_a_member_whose_name_leaves_or_bends_the_layout_fails(exported: Exported, name: str) -> None:
    verdict = verify_bundle(io.BytesIO(rezip({**exported.members, name: b"x"})), log_key=exported.log_key)
    assert any("not a path of the bundle's layout" in p for p in verdict.check("bundle").problems), verdict.text()


@pytest.mark.parametrize("cut", [1, 21, 22, 100, 5000])
def test_a_bundle_cut_short_is_refused_and_says_so(exported: Exported, cut: int) -> None:
    verdict = verify_bundle(io.BytesIO(exported.data[:-cut]), log_key=exported.log_key)
    assert not verdict.ok
    assert any("cut short" in p for p in verdict.check("bundle").problems), verdict.text()


def test_a_missing_bundle_is_named_missing(tmp_path: Path) -> None:
    """Since paths are checked to be regular files first, a missing one read as 'not a regular file'."""
    verdict = verify_bundle(tmp_path / "absent.zip")
    assert verdict.check("bundle").problems == [f"{tmp_path / 'absent.zip'}: no such file / 文件不存在"]
