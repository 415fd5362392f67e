"""A picture the seal signed it lost (a ``snapshot_lost``: its file gone, corrupt, oversized, unreadable) is exported
as ``lost_on_seal`` with the seal's statement, not as one the court never received (lost on the way, or withheld),
and only on the word of the seal that named it earlier: ``seal-verify`` checks the claim against the signed events,
and still reads bundles of format 3, which know no such reason (``docs/evidence.md``, "Snapshots")."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from seal_protocol import EventType, canonical_json
from seal_verify import Status, verify_bundle
from server.core.db import SessionFactory
from tests.server.helpers import CASE_A
from tests.server.test_report_pdf import pdf_text
from tests.verify.world import CourtWorld, build_world, join, lines, read_members, resign, write_members


@pytest.fixture
def world(session_factory: SessionFactory, database_url: str, tmp_path: Path) -> CourtWorld:
    return build_world(session_factory, database_url, tmp_path)


def _lost(sha: str, reason: str = "corrupt") -> dict[str, Any]:
    return {"snapshot": sha, "reason": reason, "detail": "its bytes hash to 00", "kept": f"corrupt/{sha}.jpg"}


def _a_picture_the_seal_lost(world: CourtWorld) -> tuple[str, str, int]:
    """seal-a1's intrusion names two pictures the court never gets; then seal-a1 signs that it lost the first one.
    (the lost one, the one in transit, the ``snapshot_lost``'s seq)."""
    lost, in_transit = world.picture("a1", deliver=False), world.picture("a1", deliver=False)
    world.send("a1", EventType.INTRUSION, {"armed": True, "snapshots": [lost, in_transit]})
    world.send("a1", EventType.SNAPSHOT_LOST, _lost(lost))
    return lost, in_transit, world.seals["a1"].seq


def _records(members: dict[str, bytes]) -> dict[str, dict[str, Any]]:
    return {r["sha256"]: r for r in (json.loads(line) for line in lines(members["snapshots.jsonl"]))}


def _with_records(members: dict[str, bytes], records: dict[str, dict[str, Any]], **more: bytes) -> dict[str, bytes]:
    return {**members, "snapshots.jsonl": join([canonical_json(r) for _, r in sorted(records.items())]), **more}


def test_a_picture_the_seal_signed_it_lost_is_exported_as_such_not_as_never_received(
    world: CourtWorld, tmp_path: Path
) -> None:
    lost, in_transit, lost_seq = _a_picture_the_seal_lost(world)
    result = world.export(CASE_A, tmp_path / "case.zip")
    members = read_members(result.path)
    assert json.loads(members["manifest.json"])["format"] == "court-seal-evidence/4"
    records = _records(members)
    assert records[lost] | {"sha256": ""} == {
        "absent_reason": "lost_on_seal",
        "device_id": "seal-a1",
        "not_stored": [],
        "present": False,
        "received_at": None,
        "refused": [],
        "sha256": "",
        "size": None,
        "snapshot_lost": [
            {"device_id": "seal-a1", "kept": f"corrupt/{lost}.jpg", "reason": "corrupt", "seq": lost_seq}
        ],
    }
    assert (records[in_transit]["absent_reason"], records[in_transit]["snapshot_lost"]) == ("not_received", [])
    verdict = verify_bundle(result.path, log_key=world.log_key.verifier())
    assert verdict.trusted, verdict.text()
    check = verdict.check("snapshots")
    # The other one never received is the world's own (build_world's intrusion names a picture it never sends).
    assert "1 the seal signed it lost" in check.summary and "2 named but never received" in check.summary
    assert "1 张封条签名声明已在封条上丢失" in check.summary
    (note,) = [n for n in check.notes if lost in n]
    assert "corrupt" in note and f"seq {lost_seq}" in note, note
    assert "lost its copy before the court receipted it" in note and "the court's word" in note, note
    assert "法院回执前其副本已在封条上丢失" in note and "法院未收到为法院所述" in note, note
    assert "can never reach" not in note and "无法送达" not in note, note
    report = re.sub(r"\s+", "", pdf_text(members["report.pdf"]))
    missing = report.split("Snapshotsthecourtdoesnothold")[1]
    said = f"封条签名声明：法院回执前其副本已在封条上丢失（封条seal-a1签名事件序号{lost_seq}："
    said += f"文件已损坏（内容与其哈希值不符），其文件仍保存在封条上（corrupt/{lost}.jpg））"
    assert said + "；法院未收到为法院所述" in missing, missing
    en = f"thesealsignedthatitlostitscopybeforethecourtreceipteditseal-a1'ssignedeventseq{lost_seq}:corrupt:"
    assert en in missing.replace("(", ""), missing
    assert "that the court never received it is the court's word".replace(" ", "") in missing, missing
    assert f"itsfileiskeptontheseal(corrupt/{lost}.jpg)" in missing, missing
    # What the seal cannot know is not said: it signs a loss of any picture not yet receipted, received or not.
    assert "无法送达" not in missing and "canneverreach" not in missing, missing
    assert "法院未收到" in missing  # the picture lost on its way


@pytest.mark.parametrize("speaker", ["other_seal", "same_seal_before_naming_it", "only_itself", "named_again_after"])
def test_a_loss_not_signed_by_the_seal_that_named_the_picture_earlier_leaves_it_not_received(
    world: CourtWorld, tmp_path: Path, speaker: str
) -> None:
    """seal-a2 says it lost seal-a1's picture; seal-a1 says it lost a picture it names only afterwards; or a
    ``snapshot_lost`` names a picture no other event does: none of these is the word of the seal that named it. Nor is
    seal-a1's loss of a picture it names again afterwards (one black frame again: queued again)."""
    sha = world.picture("a1", deliver=False)
    if speaker == "other_seal":
        world.send("a1", EventType.INTRUSION, {"armed": True, "snapshots": [sha]})
        world.send("a2", EventType.SNAPSHOT_LOST, _lost(sha))
    elif speaker == "same_seal_before_naming_it":
        world.send("a1", EventType.SNAPSHOT_LOST, _lost(sha))
        world.send("a1", EventType.INTRUSION, {"armed": True, "snapshots": [sha]})
    elif speaker == "named_again_after":
        world.send("a1", EventType.INTRUSION, {"armed": True, "snapshots": [sha]})
        world.send("a1", EventType.SNAPSHOT_LOST, _lost(sha))
        world.send("a1", EventType.INTRUSION, {"armed": True, "snapshots": [sha]})
    else:
        world.send("a1", EventType.SNAPSHOT_LOST, _lost(sha))
    path = world.export(CASE_A, tmp_path / "case.zip").path
    record = _records(read_members(path))[sha]
    assert (record["absent_reason"], record["snapshot_lost"], record["device_id"]) == ("not_received", [], "seal-a1")
    verdict = verify_bundle(path, log_key=world.log_key.verifier())
    assert verdict.trusted, verdict.text()
    check = verdict.check("snapshots")
    assert "0 the seal signed it lost" in check.summary, check.summary
    assert not any(sha in note for note in check.notes), check.notes


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_bundle_whose_loss_claims_the_signed_events_do_not_support_fails(world: CourtWorld, tmp_path: Path) -> None:
    lost, in_transit, _seq = _a_picture_the_seal_lost(world)
    members = read_members(world.export(CASE_A, tmp_path / "case.zip").path)
    statement = _records(members)[lost]["snapshot_lost"]
    forgeries = {
        "withheld_as_lost": (in_transit, {"absent_reason": "lost_on_seal"}),  # the seal blamed for the court's loss
        "lost_as_not_received": (lost, {"absent_reason": "not_received"}),  # what the seal signed hidden
        "statement_dropped": (lost, {"absent_reason": "not_received", "snapshot_lost": []}),
        "made_up": (in_transit, {"absent_reason": "lost_on_seal", "snapshot_lost": statement}),  # another's word
        "kept_hidden": (lost, {"snapshot_lost": [statement[0] | {"kept": None}]}),  # the seal's file said gone
    }
    for forgery, (sha, change) in forgeries.items():
        records = _records(members)
        records[sha] |= change
        path = write_members(tmp_path / f"{forgery}.zip", resign(_with_records(members, records), world.log_key))
        verdict = verify_bundle(path, log_key=world.log_key.verifier())
        assert verdict.failed == ["snapshots"], (forgery, verdict.text())
        assert any(sha in p for p in verdict.check("snapshots").problems), (forgery, verdict.text())


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("how", ["format_3", "format_3_saying_lost_on_seal", "format_3_with_format_4_lines"])
def test_a_bundle_of_format_3_still_verifies_as_before(world: CourtWorld, tmp_path: Path, how: str) -> None:
    """Format 3 lists a picture the seal signed it lost as ``not_received``: it verifies so (and the verdict still
    counts and notes the seal's word); a format-3 line that says ``lost_on_seal``, or has format 4's key, fails."""
    lost, _in_transit, _seq = _a_picture_the_seal_lost(world)
    members = read_members(world.export(CASE_A, tmp_path / "case.zip").path)
    records = _records(members)
    if how != "format_3_with_format_4_lines":
        for record in records.values():
            del record["snapshot_lost"]
        records[lost]["absent_reason"] = "lost_on_seal" if how == "format_3_saying_lost_on_seal" else "not_received"
    manifest = canonical_json(json.loads(members["manifest.json"]) | {"format": "court-seal-evidence/3"})
    old = resign(_with_records(members, records, **{"manifest.json": manifest}), world.log_key)
    verdict = verify_bundle(write_members(tmp_path / "v3.zip", old), log_key=world.log_key.verifier())
    if how != "format_3":
        assert verdict.failed == ["snapshots"], verdict.text()
        return
    assert verdict.trusted, verdict.text()
    check = verdict.check("snapshots")
    assert check.status is Status.OK and any(
        lost in note and "lost its copy before the court receipted it" in note for note in check.notes
    )
    assert "1 the seal signed it lost" in check.summary and "2 named but never received" in check.summary
