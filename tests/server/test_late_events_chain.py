"""Late events placed by the hash chain: a seal whose clock was off (a Pi without a real-time clock before NTP
answers) stamps an event outside its binding's time; delivered after the seal moved, the event belongs to its old
case when the stored event above it in that case names its exact bytes as ``prev_hash`` — and nothing else the seal
signs after the move gets into the old case that way (docs/protocol.md, "Case binding and late events")."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from seal_protocol import EventType, envelope_hash, snapshot_topic
from server.core.db import SessionFactory
from server.evidence.models import Snapshot
from server.ingest.receipts import committed_hashes
from server.ingest.results import IngestResult, Message, Outcome, Reason
from tests.server.helpers import CASE_A, CASE_B, jpeg_bytes, moved_long_ago
from tests.server.ingest_world import Court, make_court, resigned
from tests.server.test_late_events import event_cases, unbind_a

T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=3)
BEHIND = T0 - timedelta(days=2)  # a clock restored from a save two days old, NTP not answered yet


@pytest.fixture
def court(session_factory: SessionFactory, tmp_path: Path) -> Court:
    return make_court(session_factory, tmp_path)


def picture(shade: int) -> tuple[bytes, str]:
    data = jpeg_bytes(shade=shade)
    return data, hashlib.sha256(data).hexdigest()


def ingest(court: Court, *messages: tuple[str, bytes]) -> tuple[list[IngestResult], dict[str, list[str]]]:
    """One batch; its results and the hashes receipted to each seal."""
    now = datetime.now(UTC)
    batch = [Message(topic, data, now) for topic, data in messages]
    results = court.ingestor.ingest(batch)
    return results, committed_hashes(batch, results)


def filed(court: Court, sha: str) -> list[tuple[str, str]]:
    with court.session_factory() as session:
        rows = session.execute(select(Snapshot.case_no, Snapshot.device_id).where(Snapshot.sha256 == sha))
        return sorted((case_no, device_id) for case_no, device_id in rows)


def outcomes(results: list[IngestResult]) -> list[tuple[Outcome, Reason | None]]:
    return [(r.outcome, r.reason) for r in results]


def case_a_with_a_late_intrusion(court: Court, sha: str) -> bytes:
    """Seq 1 and 3 stored in case A; seq 2, an intrusion stamped by a clock two days behind and naming picture
    ``sha``, is held in the outbox while the seal moves to case B. Returns seq 2's bytes."""
    a = court.a
    first = a.event(EventType.AGENT_STARTED, {}, at=T0 + timedelta(minutes=10))
    late = a.event(EventType.INTRUSION, {"armed": True, "snapshots": [sha]}, at=BEHIND)
    stepped = a.event(
        EventType.CLOCK_STEPPED, {"step_ms": 2 * 86_400_000, "synced": True}, at=T0 + timedelta(minutes=12)
    )
    assert outcomes(court.send(a, first, stepped)) == [(Outcome.STORED, None)] * 2
    assert court.chain("seal-a").missing == [[2, 2]]
    unbind_a(court, bound_at=T0, unbound_at=T0 + timedelta(hours=1), then_bind_to=CASE_B)
    return late


def test_a_late_event_the_chain_places_in_the_old_case_is_stored_there_with_its_picture(court: Court) -> None:
    """The reviewer's case: refused for ever as ``wrong_case``, its picture filed and receipted under case B."""
    data, sha = picture(7)
    late = case_a_with_a_late_intrusion(court, sha)

    results, receipted = ingest(court, (snapshot_topic("seal-a", sha), data), (court.a.event_topic, late))

    assert outcomes(results) == [(Outcome.SNAPSHOT, None), (Outcome.STORED, None)]
    assert results[1].case_no == CASE_A
    assert sorted(receipted["seal-a"]) == sorted([sha, envelope_hash(late)])
    assert event_cases(court) == [(1, CASE_A), (2, CASE_A), (3, CASE_A)]
    assert court.chain("seal-a").missing == []
    assert filed(court, sha) == [(CASE_A, "seal-a")]  # case B never sees case A's premises
    [intrusion] = court.alarms("intrusion")
    assert (intrusion.case_no, intrusion.details["late"]) == (CASE_A, True)
    # sent again: a duplicate, receipted
    again, receipted = ingest(court, (court.a.event_topic, late))
    assert outcomes(again) == [(Outcome.DUPLICATE, None)]
    assert receipted["seal-a"] == [envelope_hash(late)]


def test_a_picture_sent_before_its_late_event_moves_to_the_old_case(court: Court) -> None:
    data, sha = picture(8)
    late = case_a_with_a_late_intrusion(court, sha)

    results, receipted = ingest(court, (snapshot_topic("seal-a", sha), data))
    # nothing names it yet, and the seal was moved less than a day ago: held back, never case B's meanwhile
    assert (outcomes(results), receipted, filed(court, sha)) == ([(Outcome.QUARANTINED, Reason.WRONG_CASE)], {}, [])
    results, _ = ingest(court, (court.a.event_topic, late))
    assert outcomes(results) == [(Outcome.STORED, None)]

    results, receipted = ingest(court, (snapshot_topic("seal-a", sha), data))  # the seal sends it again
    assert (outcomes(results), receipted) == ([(Outcome.SNAPSHOT, None)], {"seal-a": [sha]})
    assert filed(court, sha) == [(CASE_A, "seal-a")]


def test_an_unbound_seal_s_late_event_is_placed_by_the_chain_too(court: Court) -> None:
    a = court.a
    first = a.event(at=T0 + timedelta(minutes=10))
    late = a.event(EventType.INTRUSION, {"armed": True, "snapshots": []}, at=BEHIND)
    court.send(a, first, a.event(at=T0 + timedelta(minutes=20)))
    unbind_a(court, bound_at=T0, unbound_at=T0 + timedelta(hours=1))

    assert outcomes(court.send(a, late)) == [(Outcome.STORED, None)]
    assert event_cases(court) == [(1, CASE_A), (2, CASE_A), (3, CASE_A)]
    # a new event of the unbound seal still needs its time
    assert outcomes(court.send(a, a.event(at=BEHIND))) == [(Outcome.QUARANTINED, Reason.UNBOUND_SEAL)]


def test_late_events_filling_a_longer_gap_are_placed_from_the_top(court: Court) -> None:
    """Each is fixed by the one above it: seq 2 alone waits for seq 3; seq 3, placed by seq 4, then places seq 2 in
    the same batch (the seal sends them in order: each one's successor comes after it)."""
    a = court.a
    first = a.event(at=T0 + timedelta(minutes=10))
    late = [a.event(at=BEHIND), a.event(at=BEHIND + timedelta(seconds=1))]
    last = a.event(at=T0 + timedelta(minutes=20))
    court.send(a, first, last)
    unbind_a(court, bound_at=T0, unbound_at=T0 + timedelta(hours=1), then_bind_to=CASE_B)

    assert outcomes(court.send(a, late[0])) == [(Outcome.QUARANTINED, Reason.WRONG_CASE)]
    assert outcomes(court.send(a, *late)) == [(Outcome.STORED, None)] * 2
    assert event_cases(court) == [(1, CASE_A), (2, CASE_A), (3, CASE_A), (4, CASE_A)]
    assert court.chain("seal-a").missing == []


# -- a seal in the wrong hands after the move, its key and password taken -------------------------------------------


def test_a_new_event_after_the_move_cannot_claim_the_old_case(court: Court) -> None:
    a = court.a
    second = a.event(at=T0 + timedelta(minutes=20))
    court.send(a, a.event(at=T0 + timedelta(minutes=10)), second)
    unbind_a(court, bound_at=T0, unbound_at=T0 + timedelta(hours=1), then_bind_to=CASE_B)

    # the next seq, linked to the last stored in case A, stamped now or with a clock "behind"
    now = a.event(EventType.INTRUSION, {"armed": True, "snapshots": []}, case_no=CASE_A)
    a.prev_hash = envelope_hash(second)
    behind = a.event(EventType.INTRUSION, {"armed": True, "snapshots": []}, case_no=CASE_A, seq=3, at=BEHIND)

    for forged in (now, behind):
        assert outcomes(court.send(a, forged)) == [(Outcome.QUARANTINED, Reason.WRONG_CASE)]
    assert event_cases(court) == [(1, CASE_A), (2, CASE_A)]


def test_an_old_gap_cannot_be_filled_with_other_bytes(court: Court) -> None:
    a = court.a
    first = a.event(at=T0 + timedelta(minutes=10))
    genuine = a.event(EventType.INTRUSION, {"armed": True, "snapshots": []}, at=BEHIND)
    after = a.event(at=T0 + timedelta(minutes=20))
    court.send(a, first, after)
    unbind_a(court, bound_at=T0, unbound_at=T0 + timedelta(hours=1), then_bind_to=CASE_B)

    # linked to seq 1, but not the bytes seq 3 names
    linked = resigned(genuine, a.key, payload={"armed": False, "snapshots": []})
    # not even linked to seq 1
    unlinked = resigned(genuine, a.key, prev_hash="0" * 64)
    for forged in (linked, unlinked):
        assert outcomes(court.send(a, forged)) == [(Outcome.QUARANTINED, Reason.WRONG_CASE)]
    assert event_cases(court) == [(1, CASE_A), (3, CASE_A)]
    assert court.chain("seal-a").missing == [[2, 2]]


def test_an_event_in_an_old_gap_with_no_stored_successor_is_judged_by_its_time(court: Court) -> None:
    """Seq 1 and 4 stored: a made-up seq 2 linked to seq 1 has nothing fixing its bytes."""
    a = court.a
    first = a.event(at=T0 + timedelta(minutes=10))
    a.event(at=BEHIND)
    a.event(at=BEHIND)
    court.send(a, first, a.event(at=T0 + timedelta(minutes=20)))
    unbind_a(court, bound_at=T0, unbound_at=T0 + timedelta(hours=1), then_bind_to=CASE_B)

    made_up = resigned(a.event(at=BEHIND, seq=2), a.key, prev_hash=envelope_hash(first))
    assert outcomes(court.send(a, made_up)) == [(Outcome.QUARANTINED, Reason.WRONG_CASE)]
    assert event_cases(court) == [(1, CASE_A), (4, CASE_A)]


def test_a_picture_only_a_refused_event_names_is_neither_filed_nor_receipted(court: Court) -> None:
    a = court.a
    court.send(a, a.event(at=T0 + timedelta(minutes=10)))
    unbind_a(court, bound_at=T0, unbound_at=T0 + timedelta(hours=1), then_bind_to=CASE_B)
    data, sha = picture(9)
    refused = a.event(EventType.INTRUSION, {"armed": True, "snapshots": [sha]}, case_no=CASE_A, at=BEHIND)

    # in one batch
    results, receipted = ingest(court, (snapshot_topic("seal-a", sha), data), (a.event_topic, refused))
    assert outcomes(results) == [(Outcome.QUARANTINED, Reason.WRONG_CASE)] * 2
    assert receipted == {}
    # the picture again, in a batch of its own: its event is in the quarantine
    results, receipted = ingest(court, (snapshot_topic("seal-a", sha), data))
    assert outcomes(results) == [(Outcome.QUARANTINED, Reason.WRONG_CASE)]
    assert receipted == {}
    assert filed(court, sha) == []

    # a picture no event names is still filed under the seal's case, and receipted (once the move's own hold-back
    # is over: test_moved_seal_pictures.py)
    moved_long_ago(court.session_factory, "seal-a")
    other, other_sha = picture(10)
    results, receipted = ingest(court, (snapshot_topic("seal-a", other_sha), other))
    assert outcomes(results) == [(Outcome.SNAPSHOT, None)]
    assert receipted == {"seal-a": [other_sha]}
    assert filed(court, other_sha) == [(CASE_B, "seal-a")]
