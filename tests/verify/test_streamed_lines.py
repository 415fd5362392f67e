"""The JSON-lines files of a bundle are read from the zip line by line, each time a check passes over them, never
held whole; a line longer than seal-verify reads (MAX_LINE_BYTES) is refused unread; a file cut short in its last
line, a line of bad UTF-8 and a missing file fail as they did when the files were held whole."""

from __future__ import annotations

import io
import tracemalloc
import zipfile
from pathlib import Path

import pytest

from seal_verify import verify_bundle
from seal_verify.bundle import Lines, ObjectLines, open_bundle
from seal_verify.streamed import MAX_LINE_BYTES
from tests.verify.world import Exported, export_once


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory, migrated_sqlite: Path) -> Exported:
    return export_once(tmp_path_factory.mktemp("bundle"), migrated_sqlite)


def _zip(members: dict[str, bytes], method: int = zipfile.ZIP_DEFLATED) -> io.BytesIO:
    data = io.BytesIO()
    with zipfile.ZipFile(data, "w", method) as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    data.seek(0)
    return data


def _problems(exported: Exported, members: dict[str, bytes]) -> list[str]:
    verdict = verify_bundle(_zip(members), log_key=exported.log_key)
    return [problem for check in verdict.checks for problem in check.problems]


@pytest.mark.parametrize("method", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])
def test_lines_read_from_the_zip_are_the_files_lines(method: int) -> None:
    """Lines across the reads' chunks (64 KiB), longer than one, empty ones, of a stored and a deflated member."""
    lines = [b"", b"x" * 70_000, b"{}", b"y" * (64 * 1024 - 3), b"z" * 200_000, b"", b"\xe6\xa1\x88" * 30_000]
    data = b"\n".join(lines) + b"\n"
    with open_bundle(_zip({"audit.jsonl": data}, method)) as bundle:
        member = bundle.jsonl("audit.jsonl")
        assert member is not None and member.size == len(data) and member.longest == 200_000
        read = Lines(member, "audit.jsonl")
        assert len(read) == len(lines) and list(read) == lines
        assert list(read) == lines  # a second pass reads it again


@pytest.mark.parametrize("size", [65_536, 65_537, 131_072, 200_003])
def test_a_member_whose_last_output_zlib_holds_after_its_input_is_read_whole(size: int) -> None:
    """A very repetitive member: zlib takes in the last input while output is still to come (a long match's copy);
    the reader stopped there and refused a sound member ("its deflate stream is not exactly its N bytes")."""
    data = b"x" * size + b"\n"
    with open_bundle(_zip({"audit.jsonl": data})) as bundle:
        member = bundle.jsonl("audit.jsonl")
        assert member is not None and member.size == len(data)
        assert list(Lines(member, "audit.jsonl")) == [b"x" * size]


def test_a_line_longer_than_seal_verify_reads_is_refused_unread(exported: Exported) -> None:
    """events.jsonl with a last line of 33 MiB (33 KB zipped): the whole member was held; it is refused as a line
    too long, with no more memory than a chunk of it."""
    long = exported.members["events.jsonl"] + b'"' + b"a" * MAX_LINE_BYTES + b'"\n'
    bundle = _zip({**exported.members, "events.jsonl": long})
    del long
    tracemalloc.start()
    try:
        verdict = verify_bundle(bundle, log_key=exported.log_key)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    said = f"events.jsonl has a line of {MAX_LINE_BYTES + 2:,} bytes, longer than a bundle's lines"
    assert any(said in p for p in verdict.check("event_signatures").problems), verdict.text()
    assert "单行过长" in verdict.text()
    assert peak < 8 * 2**20, f"{peak / 2**20:.0f} MiB for a line of 32 MiB"


def test_a_line_without_a_newline_longer_than_seal_verify_reads_is_refused(exported: Exported) -> None:
    """log/proofs.jsonl of one line of 40 MiB without a newline: not ending in a newline is said first, as before."""
    bundle = _zip({**exported.members, "log/proofs.jsonl": b"a" * (40 * 2**20)})
    verdict = verify_bundle(bundle, log_key=exported.log_key)
    assert "log/proofs.jsonl does not end in a newline" in verdict.check("inclusion").problems, verdict.text()


def test_a_file_cut_in_its_last_line_bad_utf8_and_a_missing_file_fail_as_before(exported: Exported) -> None:
    cut_short = _problems(
        exported, {**exported.members, "events-meta.jsonl": exported.members["events-meta.jsonl"][:-5]}
    )
    assert "events-meta.jsonl does not end in a newline" in cut_short
    bad = _problems(exported, {**exported.members, "alarms.jsonl": b'{"a":"\xff"}\n'})
    assert any(p.startswith("alarms.jsonl line 1 is not JSON: 'utf-8' codec can't decode") for p in bad), bad
    missing = _problems(exported, {k: v for k, v in exported.members.items() if k != "events.jsonl"})
    assert "events.jsonl is missing" in missing


def test_object_lines_of_a_streamed_file_are_parsed_line_by_line() -> None:
    with open_bundle(_zip({"alarms.jsonl": b'{"a":1}\n{"b":2}\n'})) as bundle:
        assert list(ObjectLines(bundle.jsonl("alarms.jsonl"), "alarms.jsonl")) == [{"a": 1}, {"b": 2}]
        with pytest.raises(TypeError):
            bundle.get("alarms.jsonl")
