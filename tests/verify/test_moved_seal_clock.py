"""A seal whose clock is off, moved to another case and back by an honest court: the gap in its chain is excused by
the unbinding whichever clock is right (review F2). The unbinding is of the server's clock, an event's ``ts`` of
the seal's; the gap was excused only if the unbinding lay between the two events' ``ts``, so a seal two hours slow
or fast made an untouched bundle fail ``hash_chains`` — in seal-verify and in the exporter's own staged check,
whose verdict the report gives. The events' ``received_at`` (server's clock, ``events-meta.jsonl``) now widens
the window."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from seal_protocol import EventType
from seal_verify import verify_bundle
from server.core.db import SessionFactory, session_scope
from server.seals.registry import bind_seal, unbind_seal
from tests.server.helpers import CASE_A, CASE_B, message
from tests.verify.world import CourtWorld, build_world, join, lines, read_members, resign, write_members

SQLITE = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@pytest.fixture
def world(session_factory: SessionFactory, database_url: str, tmp_path: Path) -> CourtWorld:
    return build_world(session_factory, database_url, tmp_path)


def _send(world: CourtWorld, skew: timedelta) -> None:
    seal = world.seals["a1"]
    data = seal.event(EventType.HEARTBEAT, {"armed": True}, at=datetime.now(UTC) + skew)
    world.ingestor.ingest([message(seal.event_topic, data)])


def _move(world: CourtWorld, case_no: str) -> None:
    with session_scope(world.session_factory) as session:
        unbind_seal(session, actor=None, device_id="seal-a1")
        bind_seal(session, actor=None, device_id="seal-a1", case_no=case_no)
    world.seals["a1"].case_no = case_no


def _moved_and_back(world: CourtWorld, skew: timedelta) -> None:
    """seal-a1 (seqs 1–6 in A) signs seq 7 in A, 8–9 in B, 10 in A again, its clock ``skew`` off."""
    _send(world, skew)
    _move(world, CASE_B)
    _send(world, skew)
    _send(world, skew)
    _move(world, CASE_A)
    _send(world, skew)


@SQLITE
@pytest.mark.parametrize("hours", [-2, 2, 0], ids=["seal 2 h slow", "seal 2 h fast", "clocks agree"])
def test_a_seal_with_a_wrong_clock_moved_away_and_back_leaves_an_excused_gap(
    world: CourtWorld, tmp_path: Path, hours: int
) -> None:
    _moved_and_back(world, timedelta(hours=hours))
    result = world.export(CASE_A, tmp_path / "a.zip")
    assert result.verified  # the exporter's staged check, whose verdict the report states
    verdict = verify_bundle(result.path, log_key=world.log_key.verifier())
    assert verdict.trusted, verdict.text()
    assert (
        "seal-a1: seqs 8–9 missing (the seal was bound to another case meanwhile)" in verdict.check("hash_chains").notes
    )


@SQLITE
def test_a_gap_no_unbinding_falls_in_by_either_clock_still_fails(world: CourtWorld, tmp_path: Path) -> None:
    """An event removed after the move back (by someone holding the log key) is no excused gap: the unbinding lies
    before the earlier of its neighbours by both clocks, the seal's (right here) and the server's."""
    _moved_and_back(world, timedelta(0))
    _send(world, timedelta(0))
    _send(world, timedelta(0))
    members = read_members(world.export(CASE_A, tmp_path / "a.zip").path)
    events, metas = lines(members["events.jsonl"]), lines(members["events-meta.jsonl"])
    at = next(n for n, line in enumerate(events) if b'"seq":11' in line and b"seal-a1" in line)
    members["events.jsonl"] = join(events[:at] + events[at + 1 :])
    members["events-meta.jsonl"] = join(metas[:at] + metas[at + 1 :])
    verdict = verify_bundle(write_members(tmp_path / "cut.zip", resign(members, world.log_key)))
    assert "seal-a1: seq 11 missing" in verdict.check("hash_chains").problems, verdict.text()
