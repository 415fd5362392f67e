"""Snapshot filing, as a hostile review of its first version attacked it: a picture and its naming event in one
batch; identical bytes from two seals (each delivery has its own row, so filing one seal's picture again never takes
another's); a naming event that is quarantined re-homes nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from seal_protocol import EventType, snapshot_topic
from server.core.db import SessionFactory
from server.ingest.results import Outcome
from tests.server.helpers import CASE_A, CASE_B, message
from tests.server.test_snapshot_case import deliver, filed, move_to_case_b
from tests.verify.world import CourtWorld, build_world


@pytest.fixture
def world(session_factory: SessionFactory, database_url: str, tmp_path: Path) -> CourtWorld:
    return build_world(session_factory, database_url, tmp_path)


@pytest.mark.parametrize("order", ["picture_first", "event_first"])
def test_one_batch_holding_picture_and_naming_event(world: CourtWorld, order: str) -> None:
    sha = world.picture("a1", deliver=False)
    seal = world.seals["a1"]
    signed = seal.event(EventType.INTRUSION, {"armed": True, "snapshots": [sha]})  # in case A
    move_to_case_b(world)
    pic = message(snapshot_topic(seal.device_id, sha), world.pictures[sha])
    ev = message(seal.event_topic, signed)
    batch = [pic, ev] if order == "picture_first" else [ev, pic]
    outcomes = sorted(r.outcome.value for r in world.ingestor.ingest(batch))
    assert outcomes == sorted([Outcome.SNAPSHOT.value, Outcome.STORED.value])
    assert filed(world, sha) == [(CASE_A, "seal-a1")]


def test_identical_bytes_from_a_second_seal_are_taken_from_its_case(world: CourtWorld) -> None:
    identical_bytes_from_two_seals(world)


def identical_bytes_from_two_seals(world: CourtWorld) -> None:
    """Two covered lenses, same black frame. Seal a1, moved from A to B, drains picture X (provisional in B); seal b1
    of case B delivers the same bytes. a1's late event of case A claims a1's row; b1's own event naming X in case B
    must still find case B holding it (the first version had deduplicated b1's delivery against a1's row, which then
    left for A: case B lost the picture its event names, though b1 had been receipted for it). Also run on a database
    migrated from the first version of migration 0014 (test_migration_snapshots_unique.py)."""
    sha = world.picture("a1", deliver=False)
    late = world.seals["a1"].event(EventType.INTRUSION, {"armed": True, "snapshots": [sha]})  # case A
    move_to_case_b(world, long_ago=True)
    assert deliver(world, "a1", sha) is Outcome.SNAPSHOT  # provisional in B
    assert deliver(world, "b1", sha) is Outcome.SNAPSHOT  # b1's own row: receipted, the seal drops its copy
    world.ingestor.ingest([message(world.seals["a1"].event_topic, late)])
    world.send("b1", EventType.TAMPER, {"state": "open", "armed": True, "snapshots": [sha]})
    assert sorted(filed(world, sha)) == [(CASE_A, "seal-a1"), (CASE_B, "seal-b1")]


def test_quarantined_naming_event_does_not_rehome(world: CourtWorld) -> None:
    sha = world.picture("a1", deliver=False)
    seal = world.seals["a1"]
    good = seal.event(EventType.INTRUSION, {"armed": True, "snapshots": [sha]})
    move_to_case_b(world, long_ago=True)
    assert deliver(world, "a1", sha) is Outcome.SNAPSHOT
    bad = bytearray(good)
    i = bad.index(b'"sig":"') + 8
    bad[i] = ord("A") if bad[i] != ord("A") else ord("B")
    [r] = world.ingestor.ingest([message(seal.event_topic, bytes(bad))])
    assert r.outcome is Outcome.QUARANTINED
    assert filed(world, sha) == [(CASE_B, "seal-a1")]
