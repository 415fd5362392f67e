"""A bundle is trusted only if a reader going by local headers (``jar x < case.zip``, any streaming reader) sees the
very members, sizes, CRCs and bytes a reader going by the central directory sees (docs/evidence.md, "Layout of
case.zip"). The review's forgery (F1): a genuine bundle re-zipped, stored, whose local headers took sizes from a ZIP64
block seal-verify never read, was trusted while a streaming reader extracted an ``events.jsonl`` without the
intrusion. No log key is needed for any of these."""

from __future__ import annotations

import io
import struct
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest

from seal_verify import verify_bundle
from tests.verify.local_zip import Member, by_local_headers, stored_zip, swallowing_forgery
from tests.verify.world import Exported, export_once


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory, migrated_sqlite: Path) -> Exported:
    return export_once(tmp_path_factory.mktemp("bundle"), migrated_sqlite)


def bundle_problems(data: bytes, exported: Exported) -> tuple[bool, list[str]]:
    verdict = verify_bundle(io.BytesIO(data), log_key=exported.log_key)
    problems = [p for check in verdict.checks for p in check.problems]
    assert not [p for p in problems if p.startswith("could not be checked")], verdict.text()
    return verdict.trusted, verdict.check("bundle").problems


def zip64(size: int, packed: int, *, length: int = 16, more: bytes = b"") -> bytes:
    return struct.pack("<HHQQ", 1, length, size, packed) + bytes(length - 16) + more


def test_the_forgery_that_shows_a_streaming_reader_other_events_is_refused(exported: Exported) -> None:
    genuine = exported.members["events.jsonl"]
    forged = b"".join(line + b"\n" for line in genuine.splitlines() if b'"type":"intrusion"' not in line)
    assert forged != genuine
    data = swallowing_forgery(exported.members, {"events.jsonl": forged})
    with zipfile.ZipFile(io.BytesIO(data)) as archive:  # the directory: the genuine bundle
        assert {name: archive.read(name) for name in archive.namelist()} == exported.members
    assert by_local_headers(data)["events.jsonl"] == forged  # the local headers: the intrusion is gone
    trusted, problems = bundle_problems(data, exported)
    assert not trusted
    assert "commands.jsonl: its local header is not its directory entry" in problems, problems


def _local_of(name: str, **local: object) -> Callable[[Member], Member]:
    def edit(member: Member) -> Member:
        return Member(member.name, member.data, **local) if member.name == name else member  # type: ignore[arg-type]

    return edit


SAT = (0xFFFFFFFF, 0xFFFFFFFF)
#: Local headers of events.jsonl (stored) that a streaming reader reads otherwise than the directory, or may.
DIFFERING: dict[str, Callable[[int, int], dict[str, object]]] = {
    "0xFFFFFFFF sizes, a ZIP64 block of a smaller size (a reader stops after the first line)": lambda first, size: {
        "local_sizes": SAT,
        "local_extra": zip64(first, first),
    },
    "0xFFFFFFFF sizes, no ZIP64 block": lambda first, size: {"local_sizes": SAT},
    "0xFFFFFFFF sizes, a ZIP64 block of the right sizes and 8 bytes more": lambda first, size: {
        "local_sizes": SAT,
        "local_extra": zip64(size, size, length=24),
    },
    "0xFFFFFFFF sizes, a ZIP64 block of the right sizes, then a Unicode Path block": lambda first, size: {
        "local_sizes": SAT,
        "local_extra": zip64(size, size, more=struct.pack("<HHBL", 0x7075, 5, 1, 0)),
    },
    "0xFFFFFFFF sizes, a ZIP64 block of the right sizes, then a time stamp block of 64 bytes": lambda first, size: {
        "local_sizes": SAT,
        "local_extra": zip64(size, size, more=struct.pack("<HHB", 0x5455, 64, 1) + bytes(63)),
    },
    "the sizes in the header and a ZIP64 block of others besides": lambda first, size: {
        "local_extra": zip64(first, first),
    },
    "only the compressed size 0xFFFFFFFF": lambda first, size: {
        "local_sizes": (0xFFFFFFFF, size),
        "local_extra": zip64(size, size),
    },
    "a CRC of other bytes": lambda first, size: {"local_crc": 0},
    "a smaller size and no extra field": lambda first, size: {"local_sizes": (first, first)},
}


@pytest.mark.parametrize("local", sorted(DIFFERING))
def test_a_local_header_whose_sizes_are_not_the_directorys_fails_the_bundle(exported: Exported, local: str) -> None:
    events = exported.members["events.jsonl"]
    first = events.index(b"\n") + 1
    fields = DIFFERING[local](first, len(events))
    data = stored_zip([_local_of("events.jsonl", **fields)(Member(n, d)) for n, d in exported.members.items()])
    trusted, problems = bundle_problems(data, exported)
    assert not trusted
    assert "events.jsonl: its local header is not its directory entry" in problems, problems


@pytest.mark.parametrize("zip64_local", [False, True], ids=["plain local headers", "local ZIP64 blocks"])
def test_a_stored_bundle_whose_local_headers_say_what_the_directory_says_is_trusted(
    exported: Exported, zip64_local: bool
) -> None:
    """Stored is what the exporter's staging copy is, and a local ZIP64 block of exactly the directory's sizes
    (behind 0xFFFFFFFF) is what zipfile writes with ``force_zip64``: both read alike either way."""
    members = [
        Member(n, d, local_sizes=SAT, local_extra=zip64(len(d), len(d))) if zip64_local else Member(n, d)
        for n, d in exported.members.items()
    ]
    data = stored_zip(members)
    assert by_local_headers(data) == exported.members
    assert bundle_problems(data, exported) == (True, [])


class _Pipe(io.RawIOBase):
    """A file that can be written only, as a pipe: zipfile then puts each member's CRC and sizes after its data."""

    def __init__(self) -> None:
        self.data = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, b: object) -> int:
        view = memoryview(b)  # type: ignore[arg-type]
        self.data += view
        return view.nbytes


def streamed(members: dict[str, bytes], *, method: int, force_zip64: bool = False) -> bytes:
    pipe = _Pipe()
    with zipfile.ZipFile(pipe, "w") as archive:
        for name, data in members.items():
            info = zipfile.ZipInfo(name, date_time=(2026, 12, 4, 9, 30, 0))
            info.compress_type = method
            info.external_attr = 0o644 << 16
            with archive.open(info, "w", force_zip64=force_zip64) as dest:
                dest.write(data)
    return bytes(pipe.data)


@pytest.mark.parametrize("force_zip64", [False, True], ids=["32-bit descriptors", "ZIP64 descriptors"])
def test_a_deflated_bundle_with_data_descriptors_is_trusted(exported: Exported, force_zip64: bool) -> None:
    data = streamed(exported.members, method=zipfile.ZIP_DEFLATED, force_zip64=force_zip64)
    assert struct.unpack_from("<H", data, 6)[0] & 0x08
    assert by_local_headers(data) == exported.members
    assert bundle_problems(data, exported) == (True, [])


def test_a_stored_member_whose_sizes_follow_its_data_fails_the_bundle(exported: Exported) -> None:
    """A streaming reader cannot tell where a stored member ends whose sizes come after it (Java refuses it, others
    look for the next signature: in the data)."""
    data = streamed(exported.members, method=zipfile.ZIP_STORED)
    trusted, problems = bundle_problems(data, exported)
    assert not trusted
    assert any("events.jsonl is stored with its sizes after its data" in p for p in problems), problems


@pytest.mark.parametrize("wrong", [False, True], ids=["the true CRC (as Info-ZIP writes sizes)", "another CRC"])
def test_a_local_header_with_a_data_descriptor_must_say_zero_or_the_true_crc_and_sizes(
    exported: Exported, wrong: bool
) -> None:
    """With the descriptor's flag, the local CRC and sizes are 0 (APPNOTE 4.4.4), or — as Info-ZIP's ``zip`` writes
    the size there, streaming or with ``-fd`` — the directory's: a reader that takes values there takes no others
    than the descriptor's."""
    data = bytearray(streamed(exported.members, method=zipfile.ZIP_DEFLATED))
    at = 0
    while data[at + 30 : at + 42] != b"events.jsonl":
        at = data.index(b"PK\x03\x04", at + 4)
    with zipfile.ZipFile(io.BytesIO(bytes(data))) as archive:
        info = archive.getinfo("events.jsonl")
    struct.pack_into("<L", data, at + 14, zlib.crc32(exported.members["events.jsonl"]) ^ wrong)
    assert info.CRC == zlib.crc32(exported.members["events.jsonl"])
    trusted, problems = bundle_problems(bytes(data), exported)
    if not wrong:
        assert (trusted, problems) == (True, [])
        return
    assert not trusted
    assert "events.jsonl: its local header is not its directory entry" in problems, problems
