"""A seal's key as a bundle states it is the key that signed: ``seals/<id>.json``'s ``public_key`` must be its newest
registration's (``seal_keys`` fails it otherwise, with the log key pinned and a kept checkpoint too), the verdict
and the report list the keys that signed each seal's events, per registration period, and a seal whose events
several keys signed is warned of — nothing the seal signed ties such a change to it (docs/evidence.md, "Who can
forge what")."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import subprocess
from pathlib import Path

import pytest
from sqlalchemy import update

from seal_protocol import canonical_json
from seal_protocol.signing import generate_signing_key, public_key_b64
from seal_verify import verify_bundle
from seal_verify.cli import main
from server.audit.service import record_audit
from server.core.db import SessionFactory, session_scope
from server.seals.models import Seal
from server.seals.registry import register_seal
from tests.server.helpers import CASE_A, SimulatedSeal, message
from tests.verify.world import CourtWorld, build_world, read_members, resign, write_members


def pdf_text(pdf: bytes) -> str:
    text = subprocess.run(["pdftotext", "-", "-"], input=pdf, capture_output=True, check=True).stdout.decode()
    return re.sub(r"\s+", "", text)


def fingerprint(key: str) -> str:
    return hashlib.sha256(base64.b64decode(key)).hexdigest()


def printed_at(fingerprint: str, text: str) -> int:
    """Where ``fingerprint`` starts in the report's ``text``, -1 if absent: whole, or wrapped once in its table cell
    (pdftotext then puts the next cell's first line between its two lines; where it wraps depends on the glyphs)."""
    for cut in range(len(fingerprint), 8, -1):
        found = re.search(re.escape(fingerprint[:cut]) + ".{0,80}?" + re.escape(fingerprint[cut:]), text)
        if found is not None:
            return found.start()
    return -1


@pytest.fixture
def world(session_factory: SessionFactory, database_url: str, tmp_path: Path) -> CourtWorld:
    return build_world(session_factory, database_url, tmp_path)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_public_key_that_signed_nothing_is_refused(
    world: CourtWorld, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The holder of the log key puts a key of its choosing in seal-a1's record and signs the manifest again: the
    report would print that key as the seal's. Refused, with the log key pinned and the exported checkpoint kept."""
    path = world.export(CASE_A, tmp_path / "case.zip").path
    members = read_members(path)
    kept = tmp_path / "kept.txt"
    kept.write_bytes(members["log/checkpoint.txt"])
    record = json.loads(members["seals/seal-a1.json"])
    genuine = record["public_key"]
    assert genuine == record["enrolment"][-1]["public_key"] == world.seals["a1"].public_key
    swapped = public_key_b64(generate_signing_key())
    forged = resign({**members, "seals/seal-a1.json": canonical_json(record | {"public_key": swapped})}, world.log_key)
    bundle = write_members(tmp_path / "forged.zip", forged)

    key = world.log_key.verifier()
    verdict = verify_bundle(bundle, log_key=key, known_checkpoint=kept.read_bytes())
    assert verdict.failed == ["seal_keys"], verdict.text()
    (problem,) = verdict.check("seal_keys").problems
    assert problem.startswith("seals/seal-a1.json 的 public_key")
    assert swapped in problem and genuine in problem and "latest registration" in problem
    assert main([str(bundle), "--log-key", key, "--known-checkpoint", str(kept)]) == 1
    assert "检查未通过" in capsys.readouterr().out

    # the genuine bundle, checked the same way, holds; it names the key that signed seal-a1's six events
    genuine_verdict = verify_bundle(path, log_key=key, known_checkpoint=kept.read_bytes())
    assert genuine_verdict.trusted and not genuine_verdict.warnings, genuine_verdict.text()
    a1 = [u for u in genuine_verdict.signing_keys if u.device_id == "seal-a1"]
    assert [(u.public_key, u.events, u.first_seq, u.last_seq) for u in a1] == [(genuine, 6, 1, 6)]
    assert any(genuine in note for note in genuine_verdict.check("seal_keys").notes)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_public_key_is_no_signing_key_beside_an_enrolment(world: CourtWorld, tmp_path: Path) -> None:
    """Events signed with a key that only ``public_key`` names (no registration lists it) do not verify: before,
    ``public_key`` was one more key to try, so a made-up key there and events made up under it passed."""
    path = world.export(CASE_A, tmp_path / "case.zip").path
    members = read_members(path)
    record = json.loads(members["seals/seal-a1.json"])
    other = generate_signing_key()
    record["enrolment"][-1]["public_key"] = public_key_b64(other)  # the newest registration, as the server writes
    forged = resign({**members, "seals/seal-a1.json": canonical_json(record)}, world.log_key)
    verdict = verify_bundle(write_members(tmp_path / "forged.zip", forged), log_key=world.log_key.verifier())
    assert "event_signatures" in verdict.failed and "seal_keys" in verdict.failed, verdict.text()


def test_a_seal_re_keyed_before_its_events_verifies_and_the_report_lists_both_keys(
    session_factory: SessionFactory, database_url: str, tmp_path: Path
) -> None:
    """A wrong key enrolled, replaced before the seal's first event (the court accepts that): the bundle holds, and
    the report lists both registrations — the first key signed nothing, the second the seal's events."""
    world = build_world(session_factory, database_url, tmp_path)
    first, second = SimulatedSeal("seal-a3", CASE_A), SimulatedSeal("seal-a3", CASE_A)
    with session_scope(session_factory) as session:
        register_seal(session, actor=None, device_id="seal-a3", case_no=CASE_A, public_key=first.public_key)
    with session_scope(session_factory) as session:
        register_seal(
            session, actor=None, device_id="seal-a3", case_no=CASE_A, public_key=second.public_key, replace_key=True
        )
    world.seals["a3"] = second
    for _ in range(3):
        world.send("a3")
    path = world.export(CASE_A, tmp_path / "case.zip").path

    verdict = verify_bundle(path, log_key=world.log_key.verifier())
    assert verdict.trusted and not verdict.warnings, verdict.text()
    text = pdf_text(read_members(path)["report.pdf"])
    section = text[text.index("封条Sealseal-a3") :]
    old, new = fingerprint(first.public_key), fingerprint(second.public_key)  # (pdf_text drops the groups' spaces)
    at_old, at_new = printed_at(old, section), printed_at(new, section)
    assert at_old >= 0 and at_new >= 0, section[:2000]
    assert at_old < at_new and "无" in section[at_old:at_new]  # the first key signed nothing (无 none)
    assert "3个事件" in section[at_new:]
    a3 = [u for u in verdict.signing_keys if u.device_id == "seal-a3"]
    assert [(u.public_key, u.events, u.first_seq, u.last_seq) for u in a3] == [(second.public_key, 3, 1, 3)]


def test_events_under_a_key_the_server_registered_are_warned_of_and_listed(
    session_factory: SessionFactory, database_url: str, tmp_path: Path
) -> None:
    """A dishonest server (database and log key) keeps seal-a1's genuine key as its newest registration and
    ``public_key``, but between two registrations "in another case" — which this bundle's log does not hold, by
    design — enrolled a key of its own, under which it made events continuing the seal's chain. Every signature
    verifies and every registration is in force when its events came: nothing in the bundle ties the change to the
    seal. The verdict warns of it (no genuine court or seal makes one) and both it and the report name each key that
    signed — the holder compares them with the key recorded at installation."""
    world = build_world(session_factory, database_url, tmp_path)
    seal, evil = world.seals["a1"], generate_signing_key()
    genuine = seal.public_key
    for key in (public_key_b64(evil), genuine):
        with session_scope(session_factory) as session:
            session.execute(update(Seal).where(Seal.device_id == seal.device_id).values(public_key=key))
            details = {"case_no": "(2020)其他案1号", "public_key": key}
            record_audit(session, actor=None, action="seal.register", target=seal.device_id, details=details)
        if key != genuine:
            for _ in range(2):
                world.ingestor.ingest([message(seal.event_topic, seal.event(key=evil))])
    path = world.export(CASE_A, tmp_path / "case.zip").path
    record = json.loads(read_members(path)["seals/seal-a1.json"])
    assert record["public_key"] == record["enrolment"][-1]["public_key"] == genuine

    verdict = verify_bundle(path, log_key=world.log_key.verifier())
    assert verdict.trusted and verdict.warnings == ["seal_keys"], verdict.text()
    (warning,) = verdict.check("seal_keys").warnings
    assert warning.startswith("封条 seal-a1 在本包中的事件由 2 个不同公钥签名") and "installed" in warning
    a1 = [(u.public_key, u.events, u.first_seq, u.last_seq) for u in verdict.signing_keys if u.device_id == "seal-a1"]
    assert a1 == [(genuine, 6, 1, 6), (public_key_b64(evil), 2, 7, 8)]
    text = pdf_text(read_members(path)["report.pdf"])
    section = text[text.index("封条Sealseal-a1") : text.index("封条Sealseal-a2")]
    assert printed_at(fingerprint(public_key_b64(evil)), section) >= 0 and "2个事件" in section
    assert "他案" in section
