"""A picture two seals name (two covered lenses give one black frame) is ``lost_on_seal`` or ``not_stored_by_seal``
only on the word of *every* seal whose events name it: one seal's word says nothing of the other's copy, which may
be the one that never reached the court. Otherwise it is ``not_received``, still listing the statements — in the
export and in ``seal-verify`` alike; a bundle of format 3, whose exporter took one seal's ``not_stored`` for the
picture, still verifies (``docs/evidence.md``, "Snapshots")."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from seal_protocol import EventType, canonical_json
from seal_verify import verify_bundle
from server.core.db import SessionFactory
from tests.server.helpers import CASE_A
from tests.server.test_report_pdf import pdf_text
from tests.verify.world import CourtWorld, build_world, join, lines, read_members, resign, write_members

ENOSPC = "ENOSPC: No space left on device"


@pytest.fixture
def world(session_factory: SessionFactory, database_url: str, tmp_path: Path) -> CourtWorld:
    return build_world(session_factory, database_url, tmp_path)


def _records(members: dict[str, bytes]) -> dict[str, dict[str, Any]]:
    return {r["sha256"]: r for r in (json.loads(line) for line in lines(members["snapshots.jsonl"]))}


def _one_frame_two_seals(world: CourtWorld, word: str, *, both: bool = False) -> tuple[str, list[dict[str, Any]]]:
    """seal-a1 and seal-a2 each name one picture the court never gets; seal-a2 (and seal-a1 if ``both``) then signs
    that it lost it (``word`` ``lost``) or could not store it (``not_stored``). (the picture, the statements)."""
    sha = world.picture("a2", deliver=False)
    said = []
    for seal in ("a1", "a2"):
        world.send(seal, EventType.INTRUSION, {"armed": True, "snapshots": [sha]})
    for seal in ("a1", "a2") if both else ("a2",):
        trigger_seq = world.seals[seal].seq
        if word == "lost":
            lost = {"snapshot": sha, "reason": "missing", "detail": "", "kept": None}
            world.send(seal, EventType.SNAPSHOT_LOST, lost)
            reason = "missing"
        else:
            follow = {
                "snapshots": [],
                "not_stored": [{"sha256": sha, "reason": ENOSPC}],
                "trigger": "intrusion",
                "trigger_seq": trigger_seq,
            }
            world.send(seal, EventType.SNAPSHOT_TAKEN, follow)
            reason = ENOSPC
        said.append({"device_id": world.seals[seal].device_id, "reason": reason, "seq": world.seals[seal].seq})
        if word == "lost":
            said[-1]["kept"] = None
    return sha, said


KEY = {"lost": "snapshot_lost", "not_stored": "not_stored"}
REASON = {"lost": "lost_on_seal", "not_stored": "not_stored_by_seal"}


@pytest.mark.parametrize("word", ["lost", "not_stored"])
def test_one_seals_word_on_a_frame_another_seal_names_too_leaves_it_not_received(
    world: CourtWorld, tmp_path: Path, word: str
) -> None:
    sha, said = _one_frame_two_seals(world, word)
    path = world.export(CASE_A, tmp_path / "case.zip").path
    record = _records(read_members(path))[sha]
    assert (record["absent_reason"], record[KEY[word]], record["device_id"]) == ("not_received", said, "seal-a1")
    verdict = verify_bundle(path, log_key=world.log_key.verifier())
    assert verdict.trusted, verdict.text()
    check = verdict.check("snapshots")
    assert "0 the seal signed it lost" in check.summary and "0 the seal signed it could not store" in check.summary
    assert any(sha in n and "seal-a1" in n and "never received" in n for n in check.notes), check.notes


@pytest.mark.parametrize("word", ["lost", "not_stored"])
def test_the_word_of_every_seal_naming_the_frame_counts(world: CourtWorld, tmp_path: Path, word: str) -> None:
    sha, said = _one_frame_two_seals(world, word, both=True)
    path = world.export(CASE_A, tmp_path / "case.zip").path
    record = _records(read_members(path))[sha]
    assert (record["absent_reason"], record[KEY[word]]) == (REASON[word], said)
    verdict = verify_bundle(path, log_key=world.log_key.verifier())
    assert verdict.trusted, verdict.text()
    # The report cites each seal's statement with its own seal, not the line's (seal-a1) with seal-a2's seq.
    report = re.sub(r"\s+", "", pdf_text(read_members(path)["report.pdf"]))
    missing = report.split("Snapshotsthecourtdoesnothold")[1]
    a1, a2 = said
    assert f"封条seal-a1签名事件序号{a1['seq']}：" in missing and f"封条seal-a2签名事件序号{a2['seq']}：" in missing
    assert f"seal-a1'ssignedeventseq{a1['seq']}:" in missing and f"seal-a2'ssignedeventseq{a2['seq']}:" in missing


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("word", ["lost", "not_stored"])
def test_a_format_4_bundle_blaming_the_frame_on_one_seals_word_fails(
    world: CourtWorld, tmp_path: Path, word: str
) -> None:
    sha, _said = _one_frame_two_seals(world, word)
    members = read_members(world.export(CASE_A, tmp_path / "case.zip").path)
    records = _records(members)
    records[sha]["absent_reason"] = REASON[word]
    data = join([canonical_json(r) for _, r in sorted(records.items())])
    path = write_members(tmp_path / "forged.zip", resign({**members, "snapshots.jsonl": data}, world.log_key))
    verdict = verify_bundle(path, log_key=world.log_key.verifier())
    assert verdict.failed == ["snapshots"], verdict.text()
    assert any(sha in p and "not_received" in p for p in verdict.check("snapshots").problems), verdict.text()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_format_3_bundle_of_the_old_rule_still_verifies(world: CourtWorld, tmp_path: Path) -> None:
    """The format-3 exporter listed the picture ``not_stored_by_seal`` on seal-a2's word alone."""
    sha, _said = _one_frame_two_seals(world, "not_stored")
    members = read_members(world.export(CASE_A, tmp_path / "case.zip").path)
    records = _records(members)
    for record in records.values():
        del record["snapshot_lost"]
    records[sha]["absent_reason"] = "not_stored_by_seal"
    manifest = canonical_json(json.loads(members["manifest.json"]) | {"format": "court-seal-evidence/3"})
    data = join([canonical_json(r) for _, r in sorted(records.items())])
    old = resign({**members, "snapshots.jsonl": data, "manifest.json": manifest}, world.log_key)
    verdict = verify_bundle(write_members(tmp_path / "v3.zip", old), log_key=world.log_key.verifier())
    assert verdict.trusted, verdict.text()
    assert "1 the seal signed it could not store" in verdict.check("snapshots").summary
