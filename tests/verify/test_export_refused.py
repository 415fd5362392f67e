"""A picture the court received and refused (quarantined, receipted: the seal deleted its copy) is stated as such —
``refused_by_court``, with the quarantine's reason, time and size, and its bytes in ``refused/`` when they are the
picture — never as one the court never received; and ``seal-verify`` holds the export to it (``docs/evidence.md``,
"Snapshots"). Also: a picture two seals name is listed under a seal the bundle can account for."""

from __future__ import annotations

import hashlib
import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from seal_protocol import EventType, canonical_json, snapshot_topic
from seal_verify import verify_bundle
from server.core.db import SessionFactory
from server.export.gather import TimeRange
from tests.server.helpers import CASE_A, message
from tests.verify.world import CourtWorld, build_world, read_members, resign, write_members


@pytest.fixture
def world(session_factory: SessionFactory, database_url: str, tmp_path: Path) -> CourtWorld:
    return build_world(session_factory, database_url, tmp_path)


def _progressive_jpeg() -> bytes:
    """A JPEG the ingest refuses (``invalid_snapshot``: progressive), as a seal's camera might still write one."""
    ok, encoded = cv2.imencode(".jpg", np.full((24, 32, 3), 99, dtype=np.uint8), [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])
    assert ok
    return bytes(encoded.tobytes())


def _refused_picture(world: CourtWorld) -> tuple[str, bytes]:
    data = _progressive_jpeg()
    sha = hashlib.sha256(data).hexdigest()
    world.send("a1", EventType.TAMPER, {"state": "open", "armed": True, "snapshots": [sha]})
    (result,) = world.ingestor.ingest([message(snapshot_topic(world.seals["a1"].device_id, sha), data)])
    assert (result.outcome.value, result.reason) == ("quarantined", "invalid_snapshot")
    return sha, data


def _line(members: dict[str, bytes], sha: str) -> dict[str, Any]:
    found = [json.loads(x) for x in members["snapshots.jsonl"].splitlines() if json.loads(x)["sha256"] == sha]
    assert len(found) == 1
    return found[0]


def _with_line(members: dict[str, bytes], sha: str, line: dict[str, Any]) -> dict[str, bytes]:
    rows = [line if json.loads(x)["sha256"] == sha else json.loads(x) for x in members["snapshots.jsonl"].splitlines()]
    return {**members, "snapshots.jsonl": b"".join(canonical_json(r) + b"\n" for r in rows)}


def test_a_refused_picture_is_stated_and_carried(world: CourtWorld, tmp_path: Path) -> None:
    sha, data = _refused_picture(world)
    path = world.export(CASE_A, tmp_path / "q.zip").path
    members = read_members(path)
    line = _line(members, sha)
    assert json.loads(members["manifest.json"])["format"] == "court-seal-evidence/4"
    assert (line["present"], line["absent_reason"], line["received_at"], line["size"]) == (
        False,
        "refused_by_court",
        None,
        None,
    )
    (copy,) = line["refused"]
    assert copy | {"received_at": None} == {
        "copies": 1,
        "device_id": "seal-a1",
        "kept": True,
        "reason": "invalid_snapshot",
        "received_at": None,
        "sha256": sha,
        "size": len(data),
    }
    assert members[f"refused/{sha}.jpg"] == data  # what the seal signed for, and the court holds
    verdict = verify_bundle(path, log_key=world.log_key.verifier())
    assert verdict.ok and verdict.trusted, verdict.failed
    snapshots = verdict.check("snapshots")
    assert "1 received and refused by the court" in snapshots.summary
    assert any(sha in note and "invalid_snapshot" in note and "拒收" in note for note in snapshots.notes)


def test_bytes_on_the_topic_that_are_not_the_picture_are_listed_not_carried(world: CourtWorld, tmp_path: Path) -> None:
    """Other bytes on the picture's topic (``snapshot_mismatch``): received, but not the picture."""
    sha = world.picture("a1", deliver=False)
    world.send("a1", EventType.TAMPER, {"state": "open", "armed": True, "snapshots": [sha]})
    other = _progressive_jpeg()
    world.ingestor.ingest([message(snapshot_topic(world.seals["a1"].device_id, sha), other)])
    path = world.export(CASE_A, tmp_path / "m.zip").path
    members = read_members(path)
    line = _line(members, sha)
    assert line["absent_reason"] == "not_received"
    assert [(c["reason"], c["sha256"]) for c in line["refused"]] == [
        ("snapshot_mismatch", hashlib.sha256(other).hexdigest())
    ]
    assert not [name for name in members if name.startswith("refused/")]
    assert verify_bundle(path, log_key=world.log_key.verifier()).ok


def _tampered(members: dict[str, bytes], sha: str, how: str) -> dict[str, bytes]:
    line = _line(members, sha)
    if how == "said_never_received":
        return _with_line(members, sha, line | {"absent_reason": "not_received"})
    if how == "bytes_left_out":
        return {k: v for k, v in members.items() if k != f"refused/{sha}.jpg"}
    if how == "bytes_altered":
        return {**members, f"refused/{sha}.jpg": members[f"refused/{sha}.jpg"] + b"\0"}
    if how == "refused_without_a_copy":
        bare = _with_line(members, sha, line | {"refused": []})
        return {k: v for k, v in bare.items() if k != f"refused/{sha}.jpg"}
    if how == "copy_of_another_seal":
        return _with_line(members, sha, line | {"refused": [line["refused"][0] | {"device_id": "seal-a2"}]})
    if how == "said_not_kept":  # the bytes carried, yet the line says the court did not keep them
        return _with_line(members, sha, line | {"refused": [line["refused"][0] | {"kept": False}]})
    if how == "kept_not_a_bool":
        return _with_line(members, sha, line | {"refused": [line["refused"][0] | {"kept": 1}]})
    if how == "copy_of_no_seal":  # not even text: the verifier fails it, never crashes on it
        return _with_line(members, sha, line | {"refused": [line["refused"][0] | {"device_id": ["seal-a1"]}]})
    assert how == "format_2"
    head = json.loads(members["manifest.json"]) | {"format": "court-seal-evidence/2"}
    rows = [json.loads(x) for x in members["snapshots.jsonl"].splitlines()]
    for row in rows:
        del row["refused"], row["snapshot_lost"]
        if row["absent_reason"] == "refused_by_court":
            row["absent_reason"] = "not_received"
    kept = {k: v for k, v in members.items() if k != "quarantine.jsonl"}
    return kept | {
        "manifest.json": canonical_json(head),
        "snapshots.jsonl": b"".join(canonical_json(r) + b"\n" for r in rows),
    }


@pytest.mark.parametrize(
    "how",
    [
        "said_never_received",
        "bytes_left_out",
        "bytes_altered",
        "refused_without_a_copy",
        "copy_of_another_seal",
        "copy_of_no_seal",
        "said_not_kept",
        "kept_not_a_bool",
        "format_2",
    ],
)
def test_seal_verify_holds_the_export_to_the_refusal(world: CourtWorld, tmp_path: Path, how: str) -> None:
    sha, _ = _refused_picture(world)
    members = read_members(world.export(CASE_A, tmp_path / "q.zip").path)
    forged = write_members(tmp_path / "forged.zip", resign(_tampered(members, sha, how), world.log_key))
    verdict = verify_bundle(forged, log_key=world.log_key.verifier())
    assert not verdict.ok, how


def test_a_format_2_bundle_without_refusals_still_verifies(world: CourtWorld, tmp_path: Path) -> None:
    members = read_members(world.export(CASE_A, tmp_path / "a.zip").path)
    head = json.loads(members["manifest.json"]) | {"format": "court-seal-evidence/2"}
    rows = [json.loads(x) for x in members["snapshots.jsonl"].splitlines()]
    for row in rows:
        assert row.pop("refused") == row.pop("snapshot_lost") == []
    old = {k: v for k, v in members.items() if k != "quarantine.jsonl"} | {
        "manifest.json": canonical_json(head),
        "snapshots.jsonl": b"".join(canonical_json(r) + b"\n" for r in rows),
    }
    verdict = verify_bundle(
        write_members(tmp_path / "old.zip", resign(old, world.log_key)), log_key=world.log_key.verifier()
    )
    assert verdict.ok, verdict.failed


def _same_frame_from_two_seals(world: CourtWorld, *, a2_delivers: bool) -> tuple[str, datetime]:
    """Seal a1 names a picture before the range and delivers it; a2 names the same bytes inside the range."""
    black = world.picture("a1")
    world.send("a1", EventType.TAMPER, {"state": "open", "armed": True, "snapshots": [black]})
    time.sleep(0.01)
    start = datetime.now(UTC)
    time.sleep(0.01)
    world.send("a2", EventType.TAMPER, {"state": "open", "armed": True, "snapshots": [black]})
    if a2_delivers:
        world.deliver("a2", black)
    return black, start


@pytest.mark.parametrize("a2_delivers", [False, True])
def test_a_picture_two_seals_name_verifies_in_a_range_export(
    world: CourtWorld, tmp_path: Path, a2_delivers: bool
) -> None:
    black, start = _same_frame_from_two_seals(world, a2_delivers=a2_delivers)
    path = world.export(CASE_A, tmp_path / "r.zip", TimeRange(start, None)).path
    line = _line(read_members(path), black)
    assert line["present"] is True
    # The row of the seal whose exported event names it when it delivered the bytes; else the one that did.
    assert line["device_id"] == ("seal-a2" if a2_delivers else "seal-a1")
    verdict = verify_bundle(path, log_key=world.log_key.verifier())
    assert verdict.ok, verdict.failed


@pytest.mark.parametrize("device_id", ["seal-b1", "seal-zz"])
def test_a_held_picture_under_a_seal_the_bundle_does_not_hold_fails(
    world: CourtWorld, tmp_path: Path, device_id: str
) -> None:
    black, start = _same_frame_from_two_seals(world, a2_delivers=False)
    members = read_members(world.export(CASE_A, tmp_path / "r.zip", TimeRange(start, None)).path)
    forged = _with_line(members, black, _line(members, black) | {"device_id": device_id})
    verdict = verify_bundle(
        write_members(tmp_path / "f.zip", resign(forged, world.log_key)), log_key=world.log_key.verifier()
    )
    assert not verdict.ok and verdict.check("snapshots").problems
