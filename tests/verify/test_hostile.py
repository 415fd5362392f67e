"""A hostile reader's bundles: made with a log key of one's own, a zip that declares more than it may hold, and a
dishonest server's bundle that passes off another case's audit entries as this case's."""

from __future__ import annotations

import base64
import io
import json
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest

from seal_dev.tsa import LocalTsa, make_tsa_pki
from seal_protocol import canonical_json
from seal_verify import verify_bundle
from seal_verify.archive import MAX_TOTAL_BYTES
from seal_verify.cli import main
from server.core.db import SessionFactory
from server.evidence import log
from server.evidence.checkpoints import LogKey
from server.evidence.tsa import TsaClient
from server.export.bundle import manifest_note_body, sign_note
from tests.server.helpers import CASE_A, CASE_B
from tests.verify.world import CourtWorld, build_world, join, lines, read_members, resign, write_members, zip_members

SQLITE = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@pytest.fixture
def world(session_factory: SessionFactory, database_url: str, tmp_path: Path) -> CourtWorld:
    return build_world(session_factory, database_url, tmp_path)


def with_own_key(members: dict[str, bytes], key: LogKey) -> dict[str, bytes]:
    """The bundle re-signed throughout by ``key`` (same origin): key.txt, the manifest's log_key, the checkpoint."""
    head = json.loads(members["manifest.json"])
    body = members["log/checkpoint.txt"].decode("utf-8").partition("\n\n")[0] + "\n"
    members = {
        **members,
        "log/key.txt": (key.verifier() + "\n").encode("ascii"),
        "manifest.json": canonical_json({**head, "log_key": key.verifier()}),
        "log/checkpoint.txt": sign_note(body, key.origin, key.get()).encode("utf-8"),
    }
    return resign(members, key)


@SQLITE
def test_a_bundle_signed_with_a_key_of_ones_own_is_not_accepted_unless_the_key_is_pinned(
    world: CourtWorld, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    real = world.export(CASE_A, tmp_path / "case.zip").path
    members = read_members(real)
    alarms = [json.loads(line) for line in lines(members["alarms.jsonl"])]
    alarms[0]["closed_note"] = "误报 false alarm, closed by the judge"  # the server's record, rewritten
    members["alarms.jsonl"] = join([canonical_json(a) for a in alarms])
    own = LogKey(tmp_path / "forger.key", world.log_key.origin)
    forged = write_members(tmp_path / "forged.zip", with_own_key(members, own))

    verdict = verify_bundle(forged)
    assert verdict.ok and not verdict.anchored and not verdict.trusted  # self-consistent, nothing more
    assert "NOT ANCHORED" in verdict.text() and "every check holds" not in verdict.text()
    assert main([str(forged)]) == 3
    assert "未经核对" in capsys.readouterr().out
    assert main([str(forged), "--log-key", world.log_key.verifier()]) == 1
    kept = tmp_path / "kept.txt"
    kept.write_bytes(read_members(real)["log/checkpoint.txt"])
    assert main([str(forged), "--known-checkpoint", str(kept)]) == 1
    # the genuine bundle: anchored by the pinned key, or by the checkpoint kept from it
    assert main([str(real), "--log-key", world.log_key.verifier()]) == 0
    assert main([str(real), "--known-checkpoint", str(kept)]) == 0
    capsys.readouterr()
    assert main([str(real), "--json"]) == 3
    answer = json.loads(capsys.readouterr().out)
    assert (answer["ok"], answer["anchored"], answer["trusted"]) == (True, False, False)


def test_a_zip_declaring_more_than_a_bundle_holds_is_refused_unread() -> None:
    """Small members whose directory entries declare 200 MiB each (under the per-member bound), more in all than the
    total bound: refused before any member is decompressed."""
    count = MAX_TOTAL_BYTES // (200 * 2**20) + 1
    names = {f"snapshots/{n:064x}.jpg": b"\xff\xd8 small" for n in range(count)}
    data = bytearray(zip_members(names).getvalue())
    at = data.find(b"PK\x01\x02")
    while at >= 0:  # central directory headers: the uncompressed size is at offset 24
        data[at + 24 : at + 28] = struct.pack("<I", 200 * 2**20)
        at = data.find(b"PK\x01\x02", at + 4)
    verdict = verify_bundle(io.BytesIO(bytes(data)))
    assert not verdict.ok
    problems = verdict.check("bundle").problems
    assert len(problems) == 1 and "more than a bundle holds" in problems[0], problems


@SQLITE
def test_another_cases_audit_entries_passed_off_as_this_cases_are_caught(world: CourtWorld, tmp_path: Path) -> None:
    """A dishonest server (it holds the log key) adds genuine log leaves of case B's audit entries, with valid
    inclusion proofs, to case A's bundle: each audit entry must name the bundle's case."""
    other = read_members(world.export(CASE_B, tmp_path / "b.zip").path)
    members = read_members(world.export(CASE_A, tmp_path / "a.zip").path)
    size = json.loads(members["manifest.json"])["checkpoint_size"]
    entries = list(zip(lines(members["audit.jsonl"]), lines(members["audit-meta.jsonl"]), strict=True))
    entries += zip(lines(other["audit.jsonl"]), lines(other["audit-meta.jsonl"]), strict=True)
    entries.sort(key=lambda pair: json.loads(pair[1])["leaf_index"])
    indices = [json.loads(meta)["leaf_index"] for _, meta in entries]
    events = [json.loads(meta)["leaf_index"] for meta in lines(members["events-meta.jsonl"])]
    with world.session_factory() as session:
        proofs = [
            canonical_json(
                {
                    "hashes": [base64.b64encode(h).decode() for h in log.inclusion_proof(session, i, size)],
                    "leaf_index": i,
                    "tree_size": size,
                }
            )
            for i in [*events, *indices]
        ]
    members["audit.jsonl"] = join([line for line, _ in entries])
    members["audit-meta.jsonl"] = join([meta for _, meta in entries])
    members["log/proofs.jsonl"] = join(proofs)
    verdict = verify_bundle(write_members(tmp_path / "mixed.zip", resign(members, world.log_key)))
    assert verdict.failed == ["audit"], verdict.text()
    assert any(CASE_B in p for p in verdict.check("audit").problems)


def _prefix_hidden_entry(data: bytes) -> bytes:
    """A local entry of a forged events.jsonl before the real zip: a reader going by local headers shows it."""
    forged = b'{"forged":true}\n'
    name = b"events.jsonl"
    crc = zlib.crc32(forged)
    head = struct.pack("<4s2B4HL2L2H", b"PK\x03\x04", 20, 0, 0, 0, 0, 0x21, crc, len(forged), len(forged), len(name), 0)
    return head + name + forged + data


def _central(data: bytes, name: bytes) -> int:
    """The offset of the directory entry of member ``name``."""
    at = data.find(b"PK\x01\x02")
    while data[at + 46 : at + 46 + len(name)] != name:
        at = data.find(b"PK\x01\x02", at + 4)
    return at


def _local(data: bytes, name: bytes) -> int:
    return struct.unpack_from("<L", data, _central(data, name) + 42)[0]


def _set(data: bytes, at: int, value: bytes) -> bytes:
    return data[:at] + value + data[at + len(value) :]


MUTATIONS = {
    "a hidden entry before the members": _prefix_hidden_entry,
    "a local header whose size is not the directory's": lambda d: _set(
        d, _local(d, b"alarms.jsonl") + 22, struct.pack("<L", 7)
    ),
    "a directory entry of zip version 25.5": lambda d: _set(d, _central(d, b"case.json") + 6, bytes([255])),
    "bad deflate data": lambda d: _set(d, _local(d, b"events.jsonl") + 30 + len(b"events.jsonl"), b"\xff\xff"),
    "a name cut at a NUL byte": lambda d: d.replace(b"README.txt", b"case.json\x00"),
    "an empty name": lambda d: d.replace(b"README.txt", b"\x00" * 10),
    "a comment": lambda d: _set(d, len(d) - 2, struct.pack("<H", 5)) + b"hello",
}


@SQLITE
@pytest.mark.parametrize("mutation", sorted(MUTATIONS))
def test_a_zip_with_bytes_outside_what_is_verified_fails_and_never_crashes(
    world: CourtWorld, tmp_path: Path, mutation: str
) -> None:
    data = world.export(CASE_A, tmp_path / "case.zip").path.read_bytes()
    assert verify_bundle(io.BytesIO(data), log_key=world.log_key.verifier()).trusted
    changed = MUTATIONS[mutation](data)
    assert changed != data
    verdict = verify_bundle(io.BytesIO(changed), log_key=world.log_key.verifier())  # raises nothing
    assert "bundle" in verdict.failed, verdict.text()
    crashed = [p for c in verdict.checks for p in c.problems if p.startswith("could not be checked")]
    assert not crashed, crashed


def _spaced(data: bytes) -> bytes:
    """Each line (or the whole file) as the same JSON with white space: valid, not canonical."""
    if data.endswith(b"\n"):
        return join([json.dumps(json.loads(line)).encode() for line in lines(data)])
    return json.dumps(json.loads(data), indent=1).encode()


@SQLITE
@pytest.mark.parametrize(
    ("path", "check"),
    [
        ("events-meta.jsonl", "event_meta"),
        ("log/proofs.jsonl", "inclusion"),
        ("snapshots.jsonl", "snapshots"),
        ("audit-meta.jsonl", "audit"),
        ("case.json", "event_case"),
        ("seals/seal-a1.json", "event_signatures"),
    ],
)
def test_a_file_that_is_json_but_not_canonical_fails_as_the_format_says(
    world: CourtWorld, tmp_path: Path, path: str, check: str
) -> None:
    """docs/evidence.md: every .json file and .jsonl line is canonical JSON; a verifier that follows it to the
    letter rejects these, so seal-verify does too (even re-signed by the log key's holder)."""
    members = read_members(world.export(CASE_A, tmp_path / "case.zip").path)
    members[path] = _spaced(members[path])
    verdict = verify_bundle(write_members(tmp_path / "spaced.zip", resign(members, world.log_key)))
    assert check in verdict.failed, verdict.text()
    assert any("not canonical" in p for p in verdict.check(check).problems), verdict.check(check).problems


@SQLITE
def test_json_nested_too_deep_fails_its_check_without_a_trace(world: CourtWorld, tmp_path: Path) -> None:
    members = read_members(world.export(CASE_A, tmp_path / "case.zip").path)
    members["case.json"] = b"[" * 100_000 + b"]" * 100_000
    verdict = verify_bundle(write_members(tmp_path / "deep.zip", resign(members, world.log_key)))
    assert verdict.failed == ["event_case", "records"], verdict.text()  # each check that reads it
    for check in verdict.failed:
        assert any("nests too deep" in p for p in verdict.check(check).problems)


@SQLITE
def test_a_checkpoint_of_a_5000_digit_size_is_refused_as_a_checkpoint(world: CourtWorld, tmp_path: Path) -> None:
    """Signed by the log key's holder: int() of 5,000 digits raised ValueError past the note parser."""
    members = read_members(world.export(CASE_A, tmp_path / "case.zip").path)
    origin, _, root = members["log/checkpoint.txt"].decode().partition("\n\n")[0].split("\n")
    note = sign_note(f"{origin}\n{'9' * 5000}\n{root}\n", world.log_key.origin, world.log_key.get())
    members["log/checkpoint.txt"] = note.encode()
    verdict = verify_bundle(write_members(tmp_path / "big.zip", resign(members, world.log_key)))
    problems = verdict.check("checkpoint").problems
    assert problems and "not a decimal number" in problems[0], problems
    kept = verify_bundle(world.export(CASE_A, tmp_path / "again.zip").path, known_checkpoint=note)
    assert any("not a decimal number" in p for p in kept.check("known_checkpoint").problems)


Edit = Callable[[dict[str, bytes]], None]


def _edit_line(path: str, edit: Callable[[dict], None], *, where: Callable[[dict], bool] = lambda r: True) -> Edit:
    def apply(members: dict[str, bytes]) -> None:
        records = [json.loads(line) for line in lines(members[path])]
        edit(next(r for r in records if where(r)))
        members[path] = join([canonical_json(r) for r in records])

    return apply


RECORD_EDITS: dict[str, tuple[Edit, str]] = {
    "a held snapshot's size is not its file's": (
        _edit_line("snapshots.jsonl", lambda r: r.update(size=1), where=lambda r: r["present"]),
        "snapshots",
    ),
    "a snapshot line without its size": (_edit_line("snapshots.jsonl", lambda r: r.pop("size")), "snapshots"),
    "a snapshot of a seal that no event naming it is of": (
        _edit_line("snapshots.jsonl", lambda r: r.update(device_id="seal-b1")),
        "snapshots",
    ),
    "a snapshot line whose device_id is a list": (
        _edit_line("snapshots.jsonl", lambda r: r.update(device_id=["x"])),
        "snapshots",
    ),
    "an event's received_at that is no time": (
        _edit_line("events-meta.jsonl", lambda r: r.update(received_at={})),
        "event_meta",
    ),
    "a meta line's seq true for 1": (
        _edit_line("events-meta.jsonl", lambda r: r.update(seq=True), where=lambda r: r["seq"] == 1),
        "event_meta",
    ),
    "an audit leaf_index true for 1": (
        _edit_line("audit-meta.jsonl", lambda r: r.update(leaf_index=True), where=lambda r: r["leaf_index"] == 1),
        "inclusion",
    ),
}


@SQLITE
@pytest.mark.parametrize("edit", sorted(RECORD_EDITS))
def test_the_servers_records_re_signed_with_wrong_values_fail_and_never_crash(
    world: CourtWorld, tmp_path: Path, edit: str
) -> None:
    members = read_members(world.export(CASE_A, tmp_path / "case.zip").path)
    change, check = RECORD_EDITS[edit]
    change(members)
    verdict = verify_bundle(write_members(tmp_path / "edited.zip", resign(members, world.log_key)))
    assert check in verdict.failed, verdict.text()
    crashed = [p for c in verdict.checks for p in c.problems if p.startswith("could not be checked")]
    assert not crashed, crashed


@SQLITE
def test_a_manifest_path_that_is_a_list_fails_the_manifest_check(world: CourtWorld, tmp_path: Path) -> None:
    members = read_members(world.export(CASE_A, tmp_path / "case.zip").path)
    head = json.loads(members["manifest.json"])
    head["files"][0]["path"] = ["README.txt"]
    members["manifest.json"] = canonical_json(head)
    note = sign_note(manifest_note_body(members["manifest.json"]), world.log_key.origin, world.log_key.get())
    members["manifest.sig"] = note.encode()
    verdict = verify_bundle(write_members(tmp_path / "listed.zip", members))
    assert verdict.check("manifest_files").problems == ["manifest.json: a path of files is not a string"]


@SQLITE
def test_a_time_stamp_removed_by_the_server_fails_when_the_tsa_is_pinned(world: CourtWorld, tmp_path: Path) -> None:
    """Who pins the TSA's root expects a time stamp: a dishonest server that drops it (and re-signs the manifest)
    must not get an 'absent' that passes."""
    pki = make_tsa_pki(tmp_path / "tsa")
    with LocalTsa(pki) as tsa:
        result = world.export(CASE_A, tmp_path / "case.zip", tsa=TsaClient(tsa.url, roots_file=pki.ca_pem))
    members = read_members(result.path)
    roots = pki.ca_pem.read_bytes()
    assert verify_bundle(result.path, tsa_roots_pem=roots, log_key=world.log_key.verifier()).trusted
    for name in ("log/checkpoint.tsr", "log/tsa-chain.pem"):
        del members[name]
    dropped = write_members(tmp_path / "dropped.zip", resign(members, world.log_key))
    verdict = verify_bundle(dropped, tsa_roots_pem=roots, log_key=world.log_key.verifier())
    assert verdict.failed == ["timestamp"], verdict.text()
    assert verify_bundle(dropped, log_key=world.log_key.verifier()).trusted  # nobody asked for one: absent


@SQLITE
def test_a_case_json_whose_case_no_is_a_list_fails_without_a_trace(world: CourtWorld, tmp_path: Path) -> None:
    members = read_members(world.export(CASE_A, tmp_path / "case.zip").path)
    case = json.loads(members["case.json"])
    members["case.json"] = canonical_json({**case, "case_no": [case["case_no"]]})
    verdict = verify_bundle(write_members(tmp_path / "listed.zip", resign(members, world.log_key)))
    assert verdict.failed == ["event_case", "records"], verdict.text()
    assert not any(p.startswith("could not be checked") for p in verdict.check("event_case").problems)


@SQLITE
def test_a_checkpoint_note_with_a_line_that_is_no_signature_is_malformed(world: CourtWorld, tmp_path: Path) -> None:
    """golang.org/x/mod/sumdb/note rejects such a note; so does seal-verify (a second verifier reaches the same
    verdict). A line of another key before the log's own is fine."""
    members = read_members(world.export(CASE_A, tmp_path / "case.zip").path)
    note = members["log/checkpoint.txt"].decode()
    body, _, signatures = note.partition("\n\n")
    other = sign_note(body + "\n", "witness.example", LogKey(tmp_path / "witness.key", "witness.example").get())
    cosigned = f"{body}\n\n{other.partition(chr(10) * 2)[2]}{signatures}"
    members["log/checkpoint.txt"] = cosigned.encode()
    assert verify_bundle(write_members(tmp_path / "cosigned.zip", resign(members, world.log_key))).ok
    members["log/checkpoint.txt"] = (note + "trailing words\n").encode()
    verdict = verify_bundle(write_members(tmp_path / "junk.zip", resign(members, world.log_key)))
    assert "checkpoint" in verdict.failed
    assert any("no signature line" in p for p in verdict.check("checkpoint").problems)
