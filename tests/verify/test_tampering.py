"""Tampering with a bundle or with the server's database: ≥ 1,000 single-byte flips, each on a fresh copy, and a
log rebuilt and re-signed by someone holding the log key, caught with a checkpoint kept from an earlier export."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest
from sqlalchemy import delete, select

from seal_verify import verify_bundle
from server.core.db import SessionFactory
from server.evidence.errors import CheckpointRefused
from server.evidence.models import Event, LogLeaf
from tests.server.helpers import CASE_A
from tests.verify.conftest import FLIPS
from tests.verify.world import (
    CourtWorld,
    build_world,
    drop_append_only_triggers,
    read_members,
    rebuild_log,
    zip_members,
)

#: Flips tried by default; ``SEAL_LONG_TESTS=1`` tries ten times as many.
FLIP_COUNT = 1000 * (10 if os.environ.get("SEAL_LONG_TESTS") == "1" else 1)


@pytest.fixture
def world(session_factory: SessionFactory, database_url: str, tmp_path: Path) -> CourtWorld:
    return build_world(session_factory, database_url, tmp_path)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_every_single_byte_flip_of_a_file_is_detected(world: CourtWorld, tmp_path: Path) -> None:
    members = read_members(world.export(CASE_A, tmp_path / "case.zip").path)
    names = sorted(name for name, data in members.items() if data)
    rng = random.Random(20261204)
    tried = 0
    for _ in range(FLIP_COUNT):
        name = rng.choice(names)
        data = bytearray(members[name])
        at = rng.randrange(len(data))
        data[at] ^= rng.randrange(1, 256)
        verdict = verify_bundle(zip_members({**members, name: bytes(data)}, compresslevel=0))
        assert not verdict.ok, f"a flip of byte {at} of {name} went unnoticed"
        crashed = [p for c in verdict.checks for p in c.problems if p.startswith("could not be checked")]
        assert not crashed, f"flip of byte {at} of {name}: {crashed}"
        tried += 1
    FLIPS.append(tried)
    assert tried >= 1000


def test_an_altered_event_row_with_the_log_rebuilt_and_resigned_is_caught_by_a_kept_checkpoint(
    world: CourtWorld, tmp_path: Path
) -> None:
    first = world.export(CASE_A, tmp_path / "first.zip")
    kept = read_members(first.path)["log/checkpoint.txt"]
    world.send("a1")
    drop_append_only_triggers(world)
    with world.session_factory() as session:
        event = session.scalars(select(Event).where(Event.device_id == "seal-a1", Event.seq == 2)).one()
        event.raw = event.raw.replace(b'"warning":"failed"', b'"warning":"played"')  # what the seal said, changed
        session.commit()
    with pytest.raises(CheckpointRefused, match="another root"):  # the server's key alone signs no such log
        rebuild_log(world, sizes_to_sign=[first.checkpoint_size], remove_record=False)
    rebuild_log(world, sizes_to_sign=[first.checkpoint_size])
    verdict = verify_bundle(world.export(CASE_A, tmp_path / "second.zip").path, known_checkpoint=kept)
    assert {"event_signatures", "known_checkpoint"} <= set(verdict.failed), verdict.text()
    assert "manifest_signature" not in verdict.failed and "inclusion" not in verdict.failed  # a consistent forgery
    assert any("another root" in p for p in verdict.check("known_checkpoint").problems)


def test_a_removed_last_event_with_the_log_rebuilt_passes_alone_but_not_against_a_kept_checkpoint(
    world: CourtWorld, tmp_path: Path
) -> None:
    first = world.export(CASE_A, tmp_path / "first.zip")
    kept = read_members(first.path)["log/checkpoint.txt"]
    drop_append_only_triggers(world)
    with world.session_factory() as session:
        last = session.scalars(select(Event).where(Event.device_id == "seal-a1").order_by(Event.seq.desc())).first()
        assert last is not None and last.type == "heartbeat"
        session.execute(delete(LogLeaf).where(LogLeaf.event_id == last.id))
        session.delete(last)
        session.commit()
    rebuild_log(world)
    second = world.export(CASE_A, tmp_path / "second.zip")
    assert second.events == first.events - 1
    alone = verify_bundle(second.path)
    assert alone.ok, alone.text()  # the seal's chain just ends earlier: only a kept checkpoint tells
    verdict = verify_bundle(second.path, known_checkpoint=kept)
    assert verdict.failed == ["known_checkpoint"], verdict.text()
    problems = verdict.check("known_checkpoint").problems
    # the first export's audit entry came after its checkpoint: the rebuilt log has that size again, another root
    assert any("rewritten" in p or "larger than the bundle's" in p for p in problems), problems
