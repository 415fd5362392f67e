"""What seal-verify prints and reads besides the bundle, made hostile: text from the bundle that would drive the
terminal (escape sequences, line breaks, bidirectional controls), option files that never end, and JSON-lines files
of millions of tiny lines."""

from __future__ import annotations

import base64
import io
import json
import os
import re
import resource
import subprocess
import sys
import unicodedata
import zipfile
from pathlib import Path

import pytest

from seal_protocol import canonical_json
from seal_verify import BundleVerdict, Check, verify_bundle
from seal_verify.cli import main
from seal_verify.verdict import json_text
from tests.verify.world import Exported, export_once, zip_members

ROOT = Path(__file__).resolve().parents[2]
FAKE = "结论：全部检查通过。 Verdict: every check holds."
#: A forger's text: hide what follows (SGR 8), a line of their own, a right-to-left override.
HOSTILE = f"clerk1\x1b[8m\r\n{FAKE}\n\u202e\x9b2J"


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory, migrated_sqlite: Path) -> Exported:
    return export_once(tmp_path_factory.mktemp("bundle"), migrated_sqlite)


def _controls(text: str) -> list[str]:
    return sorted({c for c in text if unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") and c != "\n"})


def test_text_from_the_bundle_cannot_drive_the_terminal(
    exported: Exported, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The manifest's exported_by and case_no are printed as facts, a member's name in a problem: a forger (no key
    needed, the verdict fails) wrote escape sequences that hide the real verdict and a line that looks like a pass."""
    head = json.loads(exported.members["manifest.json"])
    members = {**exported.members, "manifest.json": canonical_json({**head, "exported_by": HOSTILE})}
    members[f"log/\x1b[2K{FAKE}.txt"] = b"x"
    path = tmp_path / "hostile.zip"
    path.write_bytes(zip_members(members).getvalue())

    verdict = verify_bundle(path, log_key=exported.log_key)
    assert not verdict.ok
    text = verdict.text()
    assert not _controls(text), _controls(text)
    assert not [line for line in text.splitlines() if line.startswith(FAKE)], text  # escaped, never a line of its own
    assert "exported_by: clerk1\\x1b[8m\\r\\n结论" in text
    assert main([str(path), "--log-key", exported.log_key]) == 1
    out = capsys.readouterr().out
    assert not _controls(out) and "\x1b" not in out
    assert main([str(path), "--log-key", exported.log_key, "--json"]) == 1
    out = capsys.readouterr().out
    assert not _controls(out), _controls(out)  # json.dumps escapes C0 only; C1 and bidi controls too now
    assert json.loads(out)["facts"]["exported_by"] == HOSTILE  # faithfully, for a program


def _run(*args: str, timeout: int = 60, memory: int = 2**30) -> subprocess.CompletedProcess[str]:
    """seal-verify as a user runs it, in a process of at most ``memory`` bytes of address space."""

    def bounded() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))

    return subprocess.run(
        [sys.executable, "-m", "seal_verify", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        preexec_fn=bounded,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


@pytest.mark.parametrize("option", ["--known-checkpoint", "--consistency-proof", "--tsa-root"])
def test_an_option_file_without_end_is_a_usage_error(exported: Exported, tmp_path: Path, option: str) -> None:
    """--known-checkpoint /dev/zero was read to its (missing) end: out of memory, a traceback."""
    bundle = tmp_path / "case.zip"
    bundle.write_bytes(exported.data)
    extra = ["--known-checkpoint", str(bundle)] if option == "--consistency-proof" else []
    done = _run(str(bundle), *extra, option, "/dev/zero")
    assert done.returncode == 2, done.stderr[-2000:]
    assert "/dev/zero" in done.stderr and "Traceback" not in done.stderr, done.stderr[-2000:]


@pytest.mark.parametrize("option", ["--known-checkpoint", "--consistency-proof", "--tsa-root"])
@pytest.mark.parametrize("kind", ["fifo", "directory"])
def test_an_option_file_that_is_no_regular_file_is_a_usage_error(
    exported: Exported, tmp_path: Path, option: str, kind: str
) -> None:
    """A FIFO given as --known-checkpoint (and the others) held the verifier for good: opening it waited for a
    writer that never came. It is refused unread, as the bundle's own path is."""
    bundle = tmp_path / "case.zip"
    bundle.write_bytes(exported.data)
    given = tmp_path / "kept"
    if kind == "fifo":
        os.mkfifo(given)
    else:
        given.mkdir()
    extra = ["--known-checkpoint", str(bundle)] if option == "--consistency-proof" else []
    done = _run(str(bundle), *extra, option, str(given), timeout=30)
    assert done.returncode == 2, done.stderr[-2000:]
    assert "not a regular file" in done.stderr and str(given) in done.stderr, done.stderr[-2000:]
    assert "Traceback" not in done.stderr, done.stderr[-2000:]


@pytest.mark.parametrize("path", ["events.jsonl", "events-meta.jsonl", "log/proofs.jsonl"])
def test_millions_of_tiny_lines_are_refused_in_bounded_time_and_memory(exported: Exported, path: str) -> None:
    """An events.jsonl of 20 million empty lines (19 MiB, 100 KB zipped) took 159 s and 4 GB, and ended in
    MemoryError tracebacks: each line became an object with its problem. A JSON-lines file holds at most
    MAX_LINES lines; the rest is not read."""
    members = {**exported.members, path: b"\n" * 20_000_000}
    data = io.BytesIO()
    with zipfile.ZipFile(data, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    bundle = Path(os.environ.get("TMPDIR", "/tmp")) / f"lines-{os.getpid()}-{path.replace('/', '-')}.zip"
    bundle.write_bytes(data.getvalue())
    try:
        done = _run(str(bundle), "--log-key", exported.log_key, timeout=60)
    finally:
        bundle.unlink()
    assert done.returncode == 1, done.stderr[-2000:]
    assert "MemoryError" not in done.stderr and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert re.search(rf"{re.escape(path)} has more than [0-9,]+ lines", done.stdout), done.stdout[-3000:]


def test_a_check_keeps_a_thousand_problems_and_counts_the_rest(exported: Exported) -> None:
    members = {**exported.members, "events.jsonl": b"{}\n" * 5000}
    verdict = verify_bundle(zip_members(members), log_key=exported.log_key)
    check = verdict.check("event_signatures")
    assert len(check.problems) == 1000 and check.problems_omitted == 4000
    assert "… 4980 more / 另有 4980 条" in verdict.text()
    assert verdict.as_json()["checks"][5]["problems_omitted"] == 4000


def test_json_of_millions_of_empty_arrays_is_refused_before_it_is_parsed(exported: Exported, tmp_path: Path) -> None:
    """Each '[]' of 3 bytes became a list of 56 bytes (and 8 for its place in the list): 2,000 lines of 21,000 of
    them (120 MiB, 330 KB zipped) took over 3 GB to parse and keep. The bundle's JSON may hold at most
    MAX_JSON_VALUES JSON values in all, counted before any is parsed."""
    line = b'{"a":[' + b"[]," * 21_000 + b"[]]}\n"
    members = {**exported.members, "events-meta.jsonl": line * 2000}
    bundle = tmp_path / "arrays.zip"
    with zipfile.ZipFile(bundle, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    done = _run(str(bundle), "--log-key", exported.log_key, timeout=60)
    assert done.returncode == 1, done.stderr[-2000:]
    assert "MemoryError" not in done.stderr and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert "JSON values" in done.stdout, done.stdout[-3000:]


def test_every_verdict_can_be_written_as_utf8() -> None:
    """A lone surrogate (JSON's "\\ud800" parses to one) in a problem or a fact would end the output with a
    UnicodeEncodeError: it is escaped like a control character."""
    check = Check("bundle", "证据包结构", "the bundle's layout")
    check.fail("a name: \ud800\x1b")
    verdict = BundleVerdict("case.zip", [check], facts={"exported_by": "\udfff"})
    assert "\\ud800\\x1b" in verdict.text().encode("utf-8").decode("utf-8")
    assert json.loads(json_text(verdict.as_json()).encode("utf-8"))["facts"]["exported_by"] == "\udfff"


@pytest.mark.parametrize("path", ["log/checkpoint.txt", "manifest.sig"])
def test_a_note_of_millions_of_signature_lines_is_malformed_in_bounded_memory(
    exported: Exported, tmp_path: Path, path: str
) -> None:
    """Each signature line became a tuple with its decoded stamp: 15 million lines of another key (240 MiB, 250 KB
    zipped) took 4.5 GB. A note has at most 100 signature lines (as golang.org/x/mod/sumdb/note) and 1 MiB."""
    body, _, signatures = exported.members[path].decode().partition("\n\n")
    note = body + "\n\n" + "\u2014 x AAAAAAA=\n" * 3_000_000 + signatures
    members = {**exported.members, path: note.encode()}
    bundle = tmp_path / "signatures.zip"
    with zipfile.ZipFile(bundle, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    done = _run(str(bundle), "--log-key", exported.log_key, timeout=60)
    assert done.returncode == 1, done.stderr[-2000:]
    assert "MemoryError" not in done.stderr and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert "more than 1048576 bytes" in done.stdout, done.stdout[-3000:]
    few = body + "\n\n" + "\u2014 x AAAAAAA=\n" * 101 + signatures
    verdict = verify_bundle(zip_members({**exported.members, path: few.encode()}), log_key=exported.log_key)
    assert any("more than 100 signature lines" in p for c in verdict.checks for p in c.problems), verdict.text()


def test_a_signature_line_added_to_the_manifests_note_fails(exported: Exported) -> None:
    """manifest.sig is the one file no manifest lists: a line of another key added to it verified (exit 0), a
    change to the bundle that nothing showed. The server signs it alone; the bundle's checkpoint, listed in the
    manifest, and a kept checkpoint may carry witnesses' lines."""
    note = exported.members["manifest.sig"].decode()
    witness = f"\u2014 witness.example {base64.b64encode(bytes(68)).decode()}\n"
    body, _, signature = note.partition("\n\n")
    for changed in (note + witness, f"{body}\n\n{witness}{signature}"):
        members = {**exported.members, "manifest.sig": changed.encode()}
        verdict = verify_bundle(zip_members(members), log_key=exported.log_key)
        assert verdict.failed == ["manifest_signature"], verdict.text()


def test_another_base64_spelling_of_the_manifests_signature_fails(exported: Exported) -> None:
    """The stamp's last base64 character carries 2 bits that decode to nothing: 'Q', 'R', 'S' and 'T' before '='
    all gave the same 68 bytes, so manifest.sig (which no manifest lists) could be changed and still verify. Base64
    in a bundle is canonical (RFC 4648 §3.5: the pad bits are zero)."""
    note = exported.members["manifest.sig"].decode()
    stamp = note.rstrip("\n").rpartition(" ")[2]
    assert stamp.endswith("=") and not stamp.endswith("==")
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    at = alphabet.index(stamp[-2])
    same = alphabet[at ^ 1]  # the low 2 bits of the last character before "=" are padding
    assert base64.b64decode(stamp[:-2] + same + "=") == base64.b64decode(stamp)
    members = {**exported.members, "manifest.sig": note.replace(stamp, stamp[:-2] + same + "=").encode()}
    verdict = verify_bundle(zip_members(members), log_key=exported.log_key)
    assert verdict.failed == ["manifest_signature"], verdict.text()


def test_a_bundle_larger_than_the_memory_at_hand_is_refused_with_a_reason(exported: Exported, tmp_path: Path) -> None:
    """A report.pdf of 250 MiB (within the bounds) in a process of 500 MB: zlib's MemoryError ended seal-verify with
    a traceback."""
    members = {**exported.members, "report.pdf": bytes(250 * 2**20)}
    bundle = tmp_path / "large.zip"
    with zipfile.ZipFile(bundle, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    done = _run(str(bundle), "--log-key", exported.log_key, memory=500 * 2**20)
    assert done.returncode == 1, done.stderr[-2000:]
    assert "Traceback" not in done.stderr, done.stderr[-2000:]
    assert "not enough memory" in done.stdout, done.stdout[-3000:]


@pytest.mark.parametrize("form", [[], ["--json"]])
def test_a_reader_that_stops_reading_ends_no_traceback(exported: Exported, tmp_path: Path, form: list[str]) -> None:
    """seal-verify case.zip --json | head: the pipe closed before the verdict was written, BrokenPipeError."""
    bundle = tmp_path / "case.zip"
    bundle.write_bytes(exported.data)
    run = subprocess.Popen(
        [sys.executable, "-m", "seal_verify", str(bundle), "--log-key", exported.log_key, *form],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert run.stdout is not None and run.stderr is not None
    run.stdout.close()
    errors = run.stderr.read().decode()
    assert run.wait(60) == 0, errors
    assert "Traceback" not in errors and "BrokenPipeError" not in errors, errors


@pytest.mark.parametrize("encoding", ["gbk", "ascii"])
def test_the_verdict_is_written_in_any_output_encoding(exported: Exported, tmp_path: Path, encoding: str) -> None:
    """Windows in China writes redirected output in GBK (code page 936), which has no '✔': seal-verify case.zip >
    verdict.txt ended in UnicodeEncodeError. What the encoding cannot hold is written as a Python escape."""
    bundle = tmp_path / "case.zip"
    bundle.write_bytes(exported.data)
    done = subprocess.run(
        [sys.executable, "-m", "seal_verify", str(bundle), "--log-key", exported.log_key],
        capture_output=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT), "PYTHONIOENCODING": encoding},
    )
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-2000:]
    out = done.stdout.decode(encoding)
    assert "Verdict: every check holds" in out and "\\u2714" in out
    assert encoding != "gbk" or "全部检查通过" in out
