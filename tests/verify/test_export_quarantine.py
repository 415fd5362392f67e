"""What the court refused of a case's seals is stated in the case's bundle (``quarantine.jsonl``) and shown by
``seal-verify`` as information; and a time range's bounds are the milliseconds the bundle states
(``docs/evidence.md``)."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest

from seal_protocol import EventType, canonical_json, parse_ts
from seal_protocol.signing import generate_signing_key, public_key_b64
from seal_verify import verify_bundle
from server.core.db import SessionFactory
from server.errors import Conflict
from server.export.gather import TimeRange
from server.seals.registry import register_seal
from tests.server.helpers import CASE_A, CASE_B, message
from tests.verify.world import CourtWorld, build_world, read_members, resign, write_members


@pytest.fixture
def world(session_factory: SessionFactory, database_url: str, tmp_path: Path) -> CourtWorld:
    return build_world(session_factory, database_url, tmp_path)


def test_the_bundle_states_what_the_court_refused_of_its_seals(world: CourtWorld, tmp_path: Path) -> None:
    seal = world.seals["a1"]
    seal.seq, seal.prev_hash = 0, None  # same key, chain started again: seq 1 conflicts with the stored seq 1
    for _ in range(3):
        (result,) = world.ingestor.ingest([message(seal.event_topic, seal.event(EventType.HEARTBEAT, {}))])
        assert result.reason == "replayed_seq"
    path = world.export(CASE_A, tmp_path / "a.zip").path
    (line,) = [json.loads(x) for x in read_members(path)["quarantine.jsonl"].splitlines()]
    assert {k: line[k] for k in ("copies", "device_id", "messages", "reason")} == {
        "copies": 3,
        "device_id": "seal-a1",
        "messages": 3,
        "reason": "replayed_seq",
    }
    assert parse_ts(line["first_received_at"]) <= parse_ts(line["last_received_at"])
    verdict = verify_bundle(path, log_key=world.log_key.verifier())
    assert verdict.ok  # information, not a reason to distrust the signed events
    notes = verdict.check("hash_chains").notes
    assert any("seal-a1" in n and "replayed_seq" in n and "3 messages" in n and "隔离区" in n for n in notes)
    other = read_members(world.export(CASE_B, tmp_path / "b.zip").path)
    assert other["quarantine.jsonl"] == b""  # another case's seals: not this one's
    before = TimeRange(None, parse_ts(line["first_received_at"]) - timedelta(seconds=1))
    assert read_members(world.export(CASE_A, tmp_path / "r.zip", before).path)["quarantine.jsonl"] == b""


@pytest.mark.parametrize("how", ["unknown_seal", "seal_not_text", "format_2", "missing"])
def test_seal_verify_reads_the_summary_strictly(world: CourtWorld, tmp_path: Path, how: str) -> None:
    seal = world.seals["a1"]
    seal.seq, seal.prev_hash = 0, None
    world.ingestor.ingest([message(seal.event_topic, seal.event(EventType.HEARTBEAT, {}))])
    members = read_members(world.export(CASE_A, tmp_path / "a.zip").path)
    if how == "unknown_seal":
        line = json.loads(members["quarantine.jsonl"]) | {"device_id": "seal-zz"}
        members["quarantine.jsonl"] = canonical_json(line) + b"\n"
    elif how == "seal_not_text":
        line = json.loads(members["quarantine.jsonl"]) | {"device_id": {"seal-a1": 1}}
        members["quarantine.jsonl"] = canonical_json(line) + b"\n"
    elif how == "format_2":
        members["manifest.json"] = canonical_json(
            json.loads(members["manifest.json"]) | {"format": "court-seal-evidence/2"}
        )
    else:
        del members["quarantine.jsonl"]
    verdict = verify_bundle(
        write_members(tmp_path / "f.zip", resign(members, world.log_key)), log_key=world.log_key.verifier()
    )
    assert not verdict.ok


@pytest.mark.parametrize("side", ["from", "to"])
def test_a_sub_millisecond_bound_keeps_the_event_of_its_millisecond(
    world: CourtWorld, tmp_path: Path, side: str
) -> None:
    full = read_members(world.export(CASE_A, tmp_path / "all.zip").path)["events.jsonl"].splitlines()
    third = json.loads(full[2])
    bound = parse_ts(third["ts"]) + timedelta(microseconds=400)
    time_range = TimeRange(bound, None) if side == "from" else TimeRange(None, bound)
    part = read_members(world.export(CASE_A, tmp_path / "part.zip", time_range).path)
    assert json.loads(part["manifest.json"])["range"][side] == third["ts"]
    assert full[2] in part["events.jsonl"].splitlines()


def test_a_new_key_for_a_seal_whose_chain_the_court_holds_is_refused(world: CourtWorld) -> None:
    """A seal never makes a new key for a begun chain: a new key means a new chain from seq 1, every event of which
    the court would quarantine (``replayed_seq``) for ever. The registry says so and names the way out."""
    new = public_key_b64(generate_signing_key())
    with world.session_factory() as session, pytest.raises(Conflict, match="new device id"):
        register_seal(session, actor=None, device_id="seal-a1", case_no=CASE_A, public_key=new, replace_key=True)
