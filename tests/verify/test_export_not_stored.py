"""A picture the seal signed it could not store (a ``snapshot_taken``'s ``not_stored``) is exported as such, with the
seal's reason and the seq of the event that says so, not as one the court never received (lost on the way, or
withheld): ``seal-verify`` checks the claim against the signed events, and still reads bundles of format 1."""

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

ENOSPC = "ENOSPC: No space left on device"


@pytest.fixture
def world(session_factory: SessionFactory, database_url: str, tmp_path: Path) -> CourtWorld:
    return build_world(session_factory, database_url, tmp_path)


def _trigger_with_a_picture_not_stored(world: CourtWorld) -> tuple[str, str, str, int]:
    """An intrusion naming a picture the seal stored but the court never received, one the seal could not store, and
    one it could not store once that an identical frame of a later trigger brought; (those three, the seq of the
    follow-up saying so)."""
    in_transit, not_stored = world.picture("a1", deliver=False), world.picture("a1", deliver=False)
    black = world.picture("a1", deliver=False)  # a covered lens: the same black frame again later
    world.send("a1", EventType.INTRUSION, {"armed": True, "snapshots": [in_transit, not_stored, black]})
    trigger_seq = world.seals["a1"].seq
    listed = [{"sha256": sha, "reason": ENOSPC} for sha in (not_stored, black)]
    follow = {"snapshots": [], "not_stored": listed, "trigger": "intrusion", "trigger_seq": trigger_seq}
    world.send("a1", EventType.SNAPSHOT_TAKEN, follow)
    said_seq = world.seals["a1"].seq
    world.send("a1", EventType.TAMPER, {"state": "open", "armed": True, "snapshots": [black]})
    world.deliver("a1", black)
    return in_transit, not_stored, black, said_seq


def _records(members: dict[str, bytes]) -> dict[str, dict[str, Any]]:
    return {r["sha256"]: r for r in (json.loads(line) for line in lines(members["snapshots.jsonl"]))}


def test_a_picture_the_seal_could_not_store_is_exported_as_such_not_as_never_received(
    world: CourtWorld, tmp_path: Path
) -> None:
    in_transit, not_stored, black, said_seq = _trigger_with_a_picture_not_stored(world)
    result = world.export(CASE_A, tmp_path / "case.zip")
    members = read_members(result.path)
    assert json.loads(members["manifest.json"])["format"] == "court-seal-evidence/4"
    records = _records(members)
    said = [{"device_id": "seal-a1", "reason": ENOSPC, "seq": said_seq}]
    assert records[not_stored] | {"sha256": ""} == {
        "absent_reason": "not_stored_by_seal",
        "device_id": "seal-a1",
        "not_stored": said,
        "present": False,
        "received_at": None,
        "refused": [],
        "sha256": "",
        "size": None,
        "snapshot_lost": [],
    }
    assert (records[in_transit]["absent_reason"], records[in_transit]["not_stored"]) == ("not_received", [])
    assert (records[black]["present"], records[black]["absent_reason"]) == (True, None)  # arrived after all
    assert records[black]["not_stored"] == said
    verdict = verify_bundle(result.path, log_key=world.log_key.verifier())
    assert verdict.trusted, verdict.text()
    check = verdict.check("snapshots")
    assert "1 the seal signed it could not store" in check.summary and "2 named but never received" in check.summary
    assert any(not_stored in n and ENOSPC in n and f"seq {said_seq}" in n for n in check.notes), check.notes
    assert "封条未能存储" in verdict.text()
    report = re.sub(r"\s+", "", pdf_text(members["report.pdf"]))
    missing = report.split("Snapshotsthecourtdoesnothold")[1]
    assert f"封条未能存储，从未发出（封条seal-a1签名事件序号{said_seq}：ENOSPC:Nospaceleftondevice）" in missing, (
        missing
    )
    assert "法院未收到" in missing and "neverreceivedbythecourt" in missing  # the picture lost on its way
    # The events counted by type: a snapshot_taken whose not_stored lists every picture is no "snapshots stored".
    assert "抓拍结果（存储或未能存储）" in report and "快照已存储" not in report and "snapshotsstored" not in report


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("forgery", ["withheld_as_not_stored", "not_stored_as_not_received", "statement_dropped"])
def test_a_bundle_whose_absence_claims_the_signed_events_do_not_support_fails(
    world: CourtWorld, tmp_path: Path, forgery: str
) -> None:
    in_transit, not_stored, _black, _seq = _trigger_with_a_picture_not_stored(world)
    members = read_members(world.export(CASE_A, tmp_path / "case.zip").path)
    records = _records(members)
    if forgery == "withheld_as_not_stored":  # the court blames the seal for a picture it never showed
        records[in_transit]["absent_reason"] = "not_stored_by_seal"
    elif forgery == "not_stored_as_not_received":
        records[not_stored]["absent_reason"] = "not_received"
    else:
        records[not_stored]["not_stored"] = []
    data = join([canonical_json(r) for _, r in sorted(records.items())])
    path = write_members(tmp_path / "forged.zip", resign({**members, "snapshots.jsonl": data}, world.log_key))
    verdict = verify_bundle(path, log_key=world.log_key.verifier())
    assert verdict.failed == ["snapshots"], verdict.text()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_bundle_of_format_1_still_verifies_and_its_report_names_what_the_seal_could_not_store(
    world: CourtWorld, tmp_path: Path
) -> None:
    _in_transit, not_stored, _black, _seq = _trigger_with_a_picture_not_stored(world)
    members = read_members(world.export(CASE_A, tmp_path / "case.zip").path)
    old = [
        {k: v for k, v in r.items() if k not in ("absent_reason", "not_stored", "refused", "snapshot_lost")}
        for _, r in sorted(_records(members).items())
    ]
    head = json.loads(members["manifest.json"]) | {"format": "court-seal-evidence/1"}
    data = join([canonical_json(r) for r in old])
    manifest = canonical_json(head)
    del members["quarantine.jsonl"]  # format 3's
    rewritten = resign({**members, "snapshots.jsonl": data, "manifest.json": manifest}, world.log_key)
    verdict = verify_bundle(write_members(tmp_path / "v1.zip", rewritten), log_key=world.log_key.verifier())
    assert verdict.trusted, verdict.text()
    check = verdict.check("snapshots")
    assert check.status is Status.OK and any(not_stored in note for note in check.notes)
    assert "1 the seal signed it could not store" in check.summary
    new_lines = resign({**members, "manifest.json": manifest}, world.log_key)  # format 1 with format 2's lines
    verdict = verify_bundle(write_members(tmp_path / "mixed.zip", new_lines), log_key=world.log_key.verifier())
    assert verdict.failed == ["snapshots"], verdict.text()
