"""A seal's signed ``not_stored`` speaks only for the pictures of its own trigger: another seal's statement, or the
same seal's for a trigger that did not name the picture, never makes a picture "not stored by the seal" — neither in
the export nor in ``seal-verify``, which fails a bundle that claims so (``docs/evidence.md``, "Snapshots")."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from seal_protocol import EventType, canonical_json
from seal_verify import verify_bundle
from server.core.db import SessionFactory
from tests.server.helpers import CASE_A
from tests.verify.world import CourtWorld, build_world, join, lines, read_members, resign, write_members

ENOSPC = "ENOSPC: No space left on device"


@pytest.fixture
def world(session_factory: SessionFactory, database_url: str, tmp_path: Path) -> CourtWorld:
    return build_world(session_factory, database_url, tmp_path)


def _a_picture_someone_else_said_was_not_stored(world: CourtWorld, speaker: str) -> tuple[str, dict[str, Any]]:
    """seal-a1's intrusion names a picture the court never gets; ``speaker`` signs a ``snapshot_taken`` whose
    ``not_stored`` lists it, but not for a trigger of seal-a1 that named it:

    - ``other_seal``: seal-a2, its ``trigger_seq`` seal-a1's intrusion's seq;
    - ``other_seal_own_trigger``: seal-a2, for its own intrusion (which names nothing);
    - ``same_seal_other_trigger``: seal-a1, for a later heartbeat of its own.

    (the picture, the statement as the bundle would list it)."""
    sha = world.picture("a1", deliver=False)
    world.send("a1", EventType.INTRUSION, {"armed": True, "snapshots": [sha]})
    trigger_seq = world.seals["a1"].seq
    seal = "a1" if speaker == "same_seal_other_trigger" else "a2"
    if speaker == "other_seal_own_trigger":
        world.send("a2", EventType.INTRUSION, {"armed": True, "snapshots": []})
        trigger_seq = world.seals["a2"].seq
    elif speaker == "same_seal_other_trigger":
        world.send("a1")
        trigger_seq = world.seals["a1"].seq
    follow = {
        "snapshots": [],
        "not_stored": [{"sha256": sha, "reason": ENOSPC}],
        "trigger": "intrusion",
        "trigger_seq": trigger_seq,
    }
    world.send(seal, EventType.SNAPSHOT_TAKEN, follow)
    return sha, {"device_id": world.seals[seal].device_id, "reason": ENOSPC, "seq": world.seals[seal].seq}


def _records(members: dict[str, bytes]) -> dict[str, dict[str, Any]]:
    return {r["sha256"]: r for r in (json.loads(line) for line in lines(members["snapshots.jsonl"]))}


SPEAKERS = ["other_seal", "other_seal_own_trigger", "same_seal_other_trigger"]


@pytest.mark.parametrize("speaker", SPEAKERS)
def test_a_statement_not_of_the_trigger_that_named_the_picture_leaves_it_not_received(
    world: CourtWorld, tmp_path: Path, speaker: str
) -> None:
    sha, _statement = _a_picture_someone_else_said_was_not_stored(world, speaker)
    path = world.export(CASE_A, tmp_path / "case.zip").path
    record = _records(read_members(path))[sha]
    assert record | {"sha256": ""} == {
        "absent_reason": "not_received",
        "device_id": "seal-a1",
        "not_stored": [],
        "present": False,
        "received_at": None,
        "refused": [],
        "sha256": "",
        "size": None,
        "snapshot_lost": [],
    }
    verdict = verify_bundle(path, log_key=world.log_key.verifier())
    assert verdict.trusted, verdict.text()
    check = verdict.check("snapshots")
    assert "0 the seal signed it could not store" in check.summary, check.summary
    assert not any(sha in note for note in check.notes), check.notes


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("speaker", SPEAKERS)
def test_a_bundle_blaming_a_seal_on_a_statement_not_of_its_trigger_fails(
    world: CourtWorld, tmp_path: Path, speaker: str
) -> None:
    sha, statement = _a_picture_someone_else_said_was_not_stored(world, speaker)
    members = read_members(world.export(CASE_A, tmp_path / "case.zip").path)
    records = _records(members)
    records[sha] |= {"absent_reason": "not_stored_by_seal", "not_stored": [statement]}
    data = join([canonical_json(r) for _, r in sorted(records.items())])
    path = write_members(tmp_path / "forged.zip", resign({**members, "snapshots.jsonl": data}, world.log_key))
    verdict = verify_bundle(path, log_key=world.log_key.verifier())
    assert verdict.failed == ["snapshots"], verdict.text()
    assert any(sha in line and "not_stored" in line for line in verdict.check("snapshots").problems), verdict.text()
