"""Export then verify: a real case's bundle verifies, and every kind of tampering is caught by the check it
concerns — not only by the manifest."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import select

from seal_verify import Status, verify_bundle
from server.audit.models import AuditEntry
from server.core.db import SessionFactory
from server.evidence.models import Event
from server.export.models import EvidenceExport
from tests.server.helpers import CASE_A, CASE_B
from tests.verify.world import (
    CourtWorld,
    build_world,
    drop_append_only_triggers,
    join,
    lines,
    read_members,
    resign,
    write_members,
)

ABSENT_WITHOUT_TSA = {"timestamp", "known_checkpoint"}


@pytest.fixture
def world(session_factory: SessionFactory, database_url: str, tmp_path: Path) -> CourtWorld:
    return build_world(session_factory, database_url, tmp_path)


def test_an_exported_case_verifies_and_holds_what_the_court_holds(world: CourtWorld, tmp_path: Path) -> None:
    result = world.export(CASE_A, tmp_path / "case.zip")
    verdict = verify_bundle(result.path, log_key=world.log_key.verifier())
    assert verdict.ok, verdict.text()
    statuses = {c.name: c.status for c in verdict.checks}
    assert {n for n, s in statuses.items() if s is Status.ABSENT} <= ABSENT_WITHOUT_TSA | {"consistency"}
    assert statuses["event_signatures"] is Status.OK and statuses["inclusion"] is Status.OK
    assert statuses["audit"] is Status.OK

    members = read_members(result.path)
    with world.session_factory() as session:
        stored = session.scalars(select(Event.raw).where(Event.case_no == CASE_A).order_by(Event.id)).all()
        exports = session.scalars(select(EvidenceExport)).all()
        audit = session.scalars(select(AuditEntry).where(AuditEntry.action == "evidence.export")).all()
    assert lines(members["events.jsonl"]) == list(stored)  # the signed bytes exactly, in log order
    assert result.events == len(stored) == 9
    snapshots = [json.loads(line) for line in lines(members["snapshots.jsonl"])]
    assert sorted(s["present"] for s in snapshots) == [False, True, True, True]
    assert {f"snapshots/{s['sha256']}.jpg" for s in snapshots if s["present"]} <= members.keys()
    for s in snapshots:
        if s["present"]:
            assert members[f"snapshots/{s['sha256']}.jpg"] == world.pictures[s["sha256"]]
    assert sorted(n for n in members if n.startswith("seals/")) == ["seals/seal-a1.json", "seals/seal-a2.json"]
    assert json.loads(lines(members["alarms.jsonl"])[0])["kind"]  # the intrusion raised an alarm
    assert [(e.case_no, e.checkpoint_size) for e in exports] == [(CASE_A, result.checkpoint_size)]
    assert audit[0].target == CASE_A and audit[0].details["checkpoint_size"] == result.checkpoint_size
    assert "全部检查通过" in verdict.text()
    entries = [json.loads(line) for line in lines(members["audit.jsonl"])]
    assert entries and {e["case_no"] for e in entries} == {CASE_A} and {e["kind"] for e in entries} == {"audit"}
    assert "seal.register" in {e["action"] for e in entries}
    proved = {json.loads(p)["leaf_index"] for p in lines(members["log/proofs.jsonl"])}
    assert len(proved) == result.events + len(entries)


def test_a_later_export_proves_consistency_with_the_checkpoint_an_earlier_one_led_to(
    world: CourtWorld, tmp_path: Path
) -> None:
    first = world.export(CASE_B, tmp_path / "first.zip")
    kept = read_members(first.path)["log/checkpoint.txt"]
    world.send("a1")
    world.send("b1")
    second = world.export(CASE_A, tmp_path / "second.zip")
    assert second.checkpoint_size > first.checkpoint_size
    verdict = verify_bundle(second.path, known_checkpoint=kept)
    assert verdict.ok, verdict.text()
    assert verdict.check("known_checkpoint").status is Status.OK
    assert verdict.check("consistency").status is Status.OK


def test_a_time_range_exports_the_events_in_it_and_states_where_a_chain_starts(
    world: CourtWorld, tmp_path: Path
) -> None:
    from server.export.gather import TimeRange

    with world.session_factory() as session:
        times = session.scalars(select(Event.ts).where(Event.case_no == CASE_A).order_by(Event.id)).all()
    result = world.export(CASE_A, tmp_path / "range.zip", TimeRange(times[3], times[-1]))
    assert result.events == len(times) - 3
    verdict = verify_bundle(result.path)
    assert verdict.ok, verdict.text()
    assert any("starts at seq" in note for note in verdict.check("hash_chains").notes)
    members = read_members(result.path)
    head = json.loads(members["manifest.json"])
    assert head["range"]["from"] is not None
    narrower = {**head, "range": {"from": head["range"]["from"], "to": head["range"]["from"]}}
    forged = resign({**members, "manifest.json": json.dumps(narrower).encode()}, world.log_key)
    assert verify_bundle(write_members(tmp_path / "narrow.zip", forged)).failed == ["event_case"]


def test_a_deleted_event_is_a_gap_in_its_seals_chain(world: CourtWorld, tmp_path: Path) -> None:
    members = read_members(world.export(CASE_A, tmp_path / "case.zip").path)
    events, meta = lines(members["events.jsonl"]), lines(members["events-meta.jsonl"])
    victim = next(
        i for i, m in enumerate(meta) if json.loads(m)["device_id"] == "seal-a1" and json.loads(m)["seq"] == 4
    )
    leaf = json.loads(meta[victim])["leaf_index"]
    proofs = [p for p in lines(members["log/proofs.jsonl"]) if json.loads(p)["leaf_index"] != leaf]
    forged = {
        **members,
        "events.jsonl": join(events[:victim] + events[victim + 1 :]),
        "events-meta.jsonl": join(meta[:victim] + meta[victim + 1 :]),
        "log/proofs.jsonl": join(proofs),
    }
    plain = verify_bundle(write_members(tmp_path / "plain.zip", forged))
    assert "manifest_files" in plain.failed
    verdict = verify_bundle(write_members(tmp_path / "forged.zip", resign(forged, world.log_key)))
    assert verdict.failed == ["hash_chains"], verdict.text()
    assert any("seq 4 missing" in p for p in verdict.check("hash_chains").problems)


def test_an_event_moved_to_another_case_is_of_the_wrong_case(world: CourtWorld, tmp_path: Path) -> None:
    drop_append_only_triggers(world)
    with world.session_factory() as session:
        event = session.scalars(select(Event).where(Event.device_id == "seal-a2").order_by(Event.seq)).first()
        assert event is not None
        event.case_no = CASE_B  # someone with the database moves it
        session.commit()
    verdict = verify_bundle(world.export(CASE_B, tmp_path / "b.zip").path)
    assert "event_case" in verdict.failed, verdict.text()
    assert any("seal-a2#1" in p for p in verdict.check("event_case").problems)


def test_reordered_events_are_caught(world: CourtWorld, tmp_path: Path) -> None:
    members = read_members(world.export(CASE_A, tmp_path / "case.zip").path)
    events, meta = lines(members["events.jsonl"]), lines(members["events-meta.jsonl"])
    events[1], events[2] = events[2], events[1]
    only_events = verify_bundle(
        write_members(tmp_path / "a.zip", resign({**members, "events.jsonl": join(events)}, world.log_key))
    )
    assert {"event_meta", "inclusion"} <= set(only_events.failed), only_events.text()
    meta[1], meta[2] = meta[2], meta[1]
    both = {**members, "events.jsonl": join(events), "events-meta.jsonl": join(meta)}
    verdict = verify_bundle(write_members(tmp_path / "b.zip", resign(both, world.log_key)))
    assert verdict.failed == ["event_meta", "inclusion"], verdict.text()  # the proofs are not in the lines' order


def test_a_swapped_snapshot_is_caught(world: CourtWorld, tmp_path: Path) -> None:
    members = read_members(world.export(CASE_A, tmp_path / "case.zip").path)
    pictures = sorted(n for n in members if n.startswith("snapshots/"))
    forged = {**members, pictures[0]: members[pictures[1]]}
    verdict = verify_bundle(write_members(tmp_path / "forged.zip", resign(forged, world.log_key)))
    assert verdict.failed == ["snapshots"], verdict.text()
    assert verify_bundle(write_members(tmp_path / "plain.zip", forged)).failed == ["manifest_files", "snapshots"]


def test_a_pinned_log_key_must_be_the_bundles(world: CourtWorld, tmp_path: Path) -> None:
    from seal_protocol.signing import generate_signing_key
    from server.evidence.checkpoints import verifier_key

    result = world.export(CASE_A, tmp_path / "case.zip")
    other = verifier_key(world.log_key.origin, generate_signing_key().verify_key)
    verdict = verify_bundle(result.path, log_key=other)
    assert {"log_key", "manifest_signature", "checkpoint"} <= set(verdict.failed)


def test_a_seal_moved_to_another_case_and_back_leaves_a_stated_gap(world: CourtWorld, tmp_path: Path) -> None:
    from server.core.db import session_scope
    from server.seals.registry import register_seal

    seal = world.seals["a2"]

    def move(case_no: str) -> None:
        with session_scope(world.session_factory) as session:
            register_seal(session, actor=None, device_id=seal.device_id, case_no=case_no, public_key=seal.public_key)
        seal.case_no = case_no

    move(CASE_B)
    world.send("a2")
    world.send("a2")
    move(CASE_A)
    world.send("a2")
    verdict = verify_bundle(world.export(CASE_A, tmp_path / "a.zip").path)
    assert verdict.ok, verdict.text()
    assert any(
        "seqs 4–5 missing (the seal was bound to another case meanwhile)" in n
        for n in verdict.check("hash_chains").notes
    )
    other = verify_bundle(world.export(CASE_B, tmp_path / "b.zip").path)
    assert other.ok, other.text()
    assert any("seal-a2: the chain starts at seq 4" in n for n in other.check("hash_chains").notes)
