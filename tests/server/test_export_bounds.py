"""The export keeps seal-verify's size bounds: a bundle the court's own verifier would refuse unread is never handed
out. The bounds are the verifier's constants; an export may be given lower ones (``ExportConfig.limits``), which the
tests set small enough for a case of a few events to pass, instead of writing hundreds of MiB."""

from __future__ import annotations

import asyncio
import itertools
import json
import struct
import zipfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

import seal_verify.archive as archive
import seal_verify.bundle as layout
from seal_protocol.signing import generate_signing_key
from seal_verify import verify_bundle
from server.app import create_app
from server.audit.models import AuditEntry
from server.core.db import SessionFactory
from server.errors import Conflict
from server.export.bundle import BundleWriter, each_json_line
from server.export.errors import BundleTooLarge
from server.export.limits import VERIFIERS, BundleLimits, OverBound, Tally
from server.export.models import EvidenceExport
from server.export.service import ExportConfig, export_case
from server.web.i18n import said_in_chinese
from tests.server.helpers import CASE_A
from tests.verify.world import CourtWorld, build_world

ON_SQLITE = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def test_the_export_s_bounds_are_seal_verify_s_and_none_can_be_set_higher() -> None:
    assert VERIFIERS == BundleLimits(
        member_bytes=archive.MAX_MEMBER_BYTES,
        total_bytes=archive.MAX_TOTAL_BYTES,
        members=archive.MAX_MEMBERS,
        directory_bytes=archive.MAX_DIRECTORY_BYTES,
        lines=layout.MAX_LINES,
        json_values=layout.MAX_JSON_VALUES,
    )
    assert VERIFIERS.member_bytes == 256 * 1024 * 1024  # as docs/evidence.md states it
    for bound, most in [("member_bytes", archive.MAX_MEMBER_BYTES), ("lines", layout.MAX_LINES)]:
        with pytest.raises(ValueError, match=bound):
            BundleLimits(**{bound: most + 1})
    with pytest.raises(ValueError, match="members"):
        BundleLimits(members=-1)


def _export(world: CourtWorld, target: Path, limits: BundleLimits) -> None:
    with world.session_factory() as session:
        export_case(
            session,
            case_no=CASE_A,
            target=target,
            log_key=world.log_key,
            config=replace(ExportConfig.from_settings(world.settings), limits=limits),
            actor=None,
            exported_by="cli:test",
        )


@ON_SQLITE
# Case A of build_world: 9 events (events.jsonl 4,034 bytes, 9 lines), 23 members, some 122 KB in all, the largest
# report.pdf (about 100 KB, written last, after the staged files were verified).
@pytest.mark.parametrize(
    ("limits", "words"),
    [
        (BundleLimits(member_bytes=4000), ["文件 events.jsonl 的字节数将超过 4,000", "the bytes of events.jsonl of"]),
        (
            BundleLimits(lines=8),
            ["文件 events.jsonl 的行数将超过 8，", "the lines of events.jsonl of the bundle would pass 8,"],
        ),
        (BundleLimits(json_values=600), ["JSON 值", "the JSON values (objects", "pass 600,"]),
        (BundleLimits(members=10), ["文件个数将超过 10，", "the number of files of the bundle would pass 10,"]),
        (BundleLimits(total_bytes=10_000), ["字节数合计将超过 10,000", "the bytes of all files"]),
        (BundleLimits(directory_bytes=300), ["中央目录的字节数将超过 300", "the bytes of the zip's central directory"]),
        (BundleLimits(member_bytes=50_000), ["文件 report.pdf 的字节数", "the bytes of report.pdf"]),
    ],
    ids=["member", "lines", "json-values", "members", "total", "directory", "report-after-staging"],
)
def test_a_bundle_past_a_bound_is_refused_in_both_languages_with_a_time_range_to_use_and_nothing_left(
    session_factory: SessionFactory, database_url: str, tmp_path: Path, limits: BundleLimits, words: list[str]
) -> None:
    world = build_world(session_factory, database_url, tmp_path)
    out = tmp_path / "out"
    with pytest.raises(BundleTooLarge) as refused:
        _export(world, out / "case.zip", limits)
    message = str(refused.value)
    assert said_in_chinese(message) and message.index("未导出") < message.index(" / ") < message.index("Not exported")
    for word in [*words, "seal-verify", "--from/--to", "from/to", "9 个事件", "9 events were received from 20"]:
        assert word in message
    assert isinstance(refused.value, Conflict)  # the API answers 409, as to an export of an empty log
    assert list(out.iterdir()) == []  # neither the staged zip nor the half-written bundle
    with session_factory() as session:
        assert session.scalar(select(func.count()).select_from(EvidenceExport)) == 0
        exports = select(func.count()).select_from(AuditEntry).where(AuditEntry.action == "evidence.export")
        assert session.scalar(exports) == 0
    _export(world, out / "case.zip", VERIFIERS)  # the same case within the verifier's bounds
    assert verify_bundle(out / "case.zip", log_key=world.log_key.verifier()).ok


@ON_SQLITE
def test_the_api_refuses_a_bundle_too_large_with_409_in_the_error_s_own_two_languages(
    session_factory: SessionFactory, database_url: str, tmp_path: Path
) -> None:
    world = build_world(session_factory, database_url, tmp_path)
    with pytest.raises(BundleTooLarge) as refused:
        _export(world, tmp_path / "case.zip", BundleLimits(lines=8))
    handler = create_app(world.settings, with_ingest=False).exception_handlers[Conflict]
    answer: Any = asyncio.run(handler(None, refused.value))  # type: ignore[arg-type]
    assert answer.status_code == 409
    assert json.loads(answer.body)["detail"] == str(refused.value)


def _written(path: Path, limits: BundleLimits = VERIFIERS) -> BundleWriter:
    """A bundle of JSON files and lines, a picture and a manifest, written at ``path`` within ``limits``."""
    key = generate_signing_key()
    with BundleWriter(path, limits=limits) as writer:
        writer.add("README.txt", "电子封条证据包\n".encode())
        writer.add("case.json", b'{"case_no":"(2026)\xe8\x8b\x8f0214\xe6\x89\xa71\xe5\x8f\xb7","seals":[1,2,{}]}')
        writer.add_lines("events.jsonl", each_json_line({"n": n, "s": [n, "a:b,c"]} for n in range(5000)))
        writer.add("snapshots/" + "ab" * 32 + ".jpg", b"\xff\xd8{[,:\n" * 1000)
        writer.add_lines("alarms.jsonl", [])
        writer.finish({"case_no": "x"}, key=key, key_name="court.example/log")
    return writer


def test_the_writer_counts_each_bound_as_seal_verify_does(tmp_path: Path) -> None:
    """Exactly at each bound a bundle is written; one below it, refused."""
    path = tmp_path / "case.zip"
    tally = _written(path).tally
    with zipfile.ZipFile(path) as zipped:
        infos = zipped.infolist()
        files = {info.filename: zipped.read(info) for info in infos}
    directory = struct.unpack("<L", path.read_bytes()[-10:-6])[0]  # the end record's size of the directory
    assert (tally.members, tally.total_bytes, tally.directory_bytes) == (
        len(infos),
        sum(info.file_size for info in infos),
        directory,
    )
    values = sum(layout.json_values(data) for name, data in files.items() if name.endswith((".json", ".jsonl")))
    assert tally.json_values == values
    largest = max(info.file_size for info in infos)
    most_lines = max(data.count(b"\n") for name, data in files.items() if name.endswith(".jsonl"))
    exact = BundleLimits(largest, tally.total_bytes, tally.members, tally.directory_bytes, most_lines, values)
    _written(tmp_path / "exact.zip", exact)
    for bound in ("member_bytes", "total_bytes", "members", "directory_bytes", "lines", "json_values"):
        with pytest.raises(OverBound):
            _written(tmp_path / f"{bound}.zip", replace(exact, **{bound: getattr(exact, bound) - 1}))


def test_lines_are_counted_as_they_are_written_not_gathered_first(tmp_path: Path) -> None:
    """An endless stream of lines is refused at the bound: the file is never built whole in memory."""
    taken = itertools.count()
    endless = (b"x" * 99 + b"\n" for _ in taken)
    with BundleWriter(tmp_path / "case.zip", limits=BundleLimits(member_bytes=8 * 1024 * 1024)) as writer:
        with pytest.raises(OverBound, match="the bytes of events.jsonl would pass 8,388,608"):
            writer.add_lines("events.jsonl", endless)
    assert next(taken) < 100_000  # some 84,000 lines of 100 bytes, and one batch more


def test_the_evidence_doc_states_the_bounds_the_verifier_and_the_export_keep() -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "evidence.md").read_text(encoding="utf-8")
    section = doc.split("### Size bounds", 1)[1].split("\n### ", 1)[0]
    stated = [
        f"{VERIFIERS.member_bytes:,}",
        f"{VERIFIERS.total_bytes:,}",
        f"| {VERIFIERS.members:,} |",
        f"| {VERIFIERS.directory_bytes // 1024 // 1024} MiB",
        f"| {VERIFIERS.lines:,} |",
        f"| {VERIFIERS.json_values:,} (",
    ]
    assert [words for words in stated if words not in section] == []


def test_an_entry_past_2_gib_of_offsets_is_counted_with_its_zip64_field(tmp_path: Path) -> None:
    """zipfile gives a member whose local header starts past 2 GiB a ZIP64 extra field in the directory: the tally
    counts it as zipfile writes it (here in a sparse file whose zip starts past 2 GiB)."""
    path, at = tmp_path / "far.zip", 2**31 + 10
    with path.open("wb") as sparse:
        sparse.seek(at)
        with zipfile.ZipFile(sparse, "w") as far:
            far.writestr("log/key.txt", b"key\n")
    with path.open("rb") as written:
        written.seek(-22, 2)
        directory = struct.unpack("<4s4H2LH", written.read(22))[5]  # the end record's size of the directory
    tally = Tally(VERIFIERS)
    tally.member("log/key.txt", at)
    assert tally.directory_bytes == directory == 46 + len("log/key.txt") + 12
