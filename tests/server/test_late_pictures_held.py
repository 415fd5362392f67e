"""A picture that an event refused for its case names is held back (quarantined ``wrong_case``, unreceipted) only
while the chain may yet place that event in its case, and for at most ``HOLD_BACK_LIMIT`` since its first refusal;
then it is filed under the seal's current case and receipted, as any picture no stored event names
(docs/protocol.md, "Late events and the chain"). Before, a picture whose event could never be placed (a seal moved
from A to B still saying A) was held back for ever: never receipted, never filed, its JPEG kept in the seal's spool."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import update

from seal_protocol import EventType, envelope_hash, event_topic, snapshot_topic
from server.core.db import SessionFactory, session_scope
from server.ingest.late_chain import HOLD_BACK_LIMIT
from server.ingest.models import QuarantinedMessage
from server.ingest.results import Outcome, Reason
from tests.server.helpers import CASE_A, CASE_B, moved_long_ago
from tests.server.ingest_world import Court, make_court
from tests.server.test_late_events import event_cases, unbind_a
from tests.server.test_late_events_chain import BEHIND, T0, filed, ingest, outcomes, picture

HELD = (Outcome.QUARANTINED, Reason.WRONG_CASE)


@pytest.fixture
def court(session_factory: SessionFactory, tmp_path: Path) -> Court:
    return make_court(session_factory, tmp_path)


def refused_long_ago(court: Court) -> None:
    """The seal's events refused for their case were first refused longer ago than the hold-back lasts."""
    with session_scope(court.session_factory) as session:
        long_ago = datetime.now(UTC) - HOLD_BACK_LIMIT - timedelta(minutes=1)
        session.execute(
            update(QuarantinedMessage)
            .where(QuarantinedMessage.topic == event_topic("seal-a"))
            .values(received_at=long_ago)
        )


def moved_to_b(court: Court) -> None:
    """Moved from A to B more than a day ago: the move's own hold-back of the seal's pictures no event names is over
    (test_moved_seal_pictures.py), only the refused events' is tested here."""
    court.send(court.a, court.a.event(at=T0 + timedelta(minutes=10)))
    unbind_a(court, bound_at=T0, unbound_at=T0 + timedelta(hours=1), then_bind_to=CASE_B)
    moved_long_ago(court.session_factory, "seal-a")


def test_a_misconfigured_seal_s_picture_is_filed_in_its_case_once_its_event_can_no_longer_be_placed(
    court: Court,
) -> None:
    """The reviewer's case: moved from A to B, the seal still says A; its intrusion at B's premises is refused
    ``wrong_case``. Once the seal is reconfigured for B and an event of it is stored there, that intrusion can never
    be placed in A (the event above it is B's): its picture is B's, filed and receipted."""
    a = court.a
    moved_to_b(court)
    data, sha = picture(21)
    intrusion = a.event(EventType.INTRUSION, {"armed": True, "snapshots": [sha]})  # ts now, says case A

    results, receipted = ingest(court, (a.event_topic, intrusion), (snapshot_topic("seal-a", sha), data))
    assert outcomes(results) == [HELD, HELD]  # it may yet be placed: its successor may still come, in A
    assert receipted == {}

    a.case_no = CASE_B  # reconfigured
    assert outcomes(court.send(a, a.event())) == [(Outcome.STORED, None)]
    for picture_outcome in (Outcome.SNAPSHOT, Outcome.DUPLICATE):
        results, receipted = ingest(court, (a.event_topic, intrusion), (snapshot_topic("seal-a", sha), data))
        # the event itself is still refused (a clerk may correct the binding); its picture is B's
        assert outcomes(results) == [HELD, (picture_outcome, None)]
        assert receipted == {"seal-a": [sha]}
    assert filed(court, sha) == [(CASE_B, "seal-a")]


def test_a_picture_is_held_back_for_a_bounded_time_only(court: Court) -> None:
    """A seal that keeps saying A: each of its events is above every stored one, and might still be followed by
    one of A. After the hold-back's limit, its picture is filed under B and receipted; should the event be placed in
    A after all, the picture moves there."""
    a = court.a
    moved_to_b(court)
    data, sha = picture(22)
    late = a.event(EventType.INTRUSION, {"armed": True, "snapshots": [sha]}, at=BEHIND)
    assert outcomes(ingest(court, (a.event_topic, late), (snapshot_topic("seal-a", sha), data))[0]) == [HELD, HELD]
    assert outcomes(ingest(court, (snapshot_topic("seal-a", sha), data))[0]) == [HELD]

    refused_long_ago(court)
    results, receipted = ingest(court, (a.event_topic, late), (snapshot_topic("seal-a", sha), data))

    assert outcomes(results) == [HELD, (Outcome.SNAPSHOT, None)]
    assert receipted == {"seal-a": [sha]}
    assert filed(court, sha) == [(CASE_B, "seal-a")]
    # its successor, signed in A before the move, comes at last: the event is placed, and its picture follows it
    follower = a.event(at=T0 + timedelta(minutes=20))
    assert outcomes(court.send(a, follower, late)) == [(Outcome.STORED, None)] * 2
    assert event_cases(court) == [(1, CASE_A), (2, CASE_A), (3, CASE_A)]
    assert filed(court, sha) == [(CASE_A, "seal-a")]


def test_a_picture_whose_event_the_chain_will_place_never_goes_to_the_new_case(court: Court) -> None:
    """The seal drains its outbox after the move: seq 2 (clock behind, naming the picture) and the picture come
    before seq 3 (stamped within A's binding). Seq 2 is refused at first and placed once seq 3 is stored; its
    picture waits, then is filed in A — never in B, not even for a while."""
    a = court.a
    moved_to_b(court)
    data, sha = picture(23)
    late = a.event(EventType.INTRUSION, {"armed": True, "snapshots": [sha]}, at=BEHIND)
    follower = a.event(at=T0 + timedelta(minutes=20))

    results, receipted = ingest(court, (a.event_topic, late), (snapshot_topic("seal-a", sha), data))
    assert (outcomes(results), receipted, filed(court, sha)) == ([HELD, HELD], {}, [])
    # seq 3 in a batch of its own, then the picture again before seq 2 is: seq 3 places seq 2, so the picture waits
    assert outcomes(court.send(a, follower)) == [(Outcome.STORED, None)]
    results, receipted = ingest(court, (snapshot_topic("seal-a", sha), data))
    assert (outcomes(results), receipted, filed(court, sha)) == ([HELD], {}, [])

    results, receipted = ingest(court, (a.event_topic, late), (snapshot_topic("seal-a", sha), data))
    assert outcomes(results) == [(Outcome.STORED, None), (Outcome.SNAPSHOT, None)]
    assert sorted(receipted["seal-a"]) == sorted([envelope_hash(late), sha])
    assert filed(court, sha) == [(CASE_A, "seal-a")]


def test_a_picture_waits_while_a_gap_of_its_event_s_case_fills_from_the_top(court: Court) -> None:
    """Seq 1 and 4 in A, seq 2 (naming the picture) and 3 late: seq 2 may be placed once seq 3 is. Its successor
    stored in this very batch counts too (and places it in the same batch when it comes after it)."""
    a = court.a
    first = a.event(at=T0 + timedelta(minutes=10))
    data, sha = picture(24)
    late = a.event(EventType.INTRUSION, {"armed": True, "snapshots": [sha]}, at=BEHIND)
    middle = a.event(at=BEHIND + timedelta(seconds=1))
    court.send(a, first, a.event(at=T0 + timedelta(minutes=20)))
    unbind_a(court, bound_at=T0, unbound_at=T0 + timedelta(hours=1), then_bind_to=CASE_B)
    moved_long_ago(court.session_factory, "seal-a")

    results, _ = ingest(court, (a.event_topic, late), (snapshot_topic("seal-a", sha), data))
    assert outcomes(results) == [HELD, HELD]  # seq 4 of A is above it, seq 3 missing
    results, _ = ingest(court, (a.event_topic, middle), (snapshot_topic("seal-a", sha), data))
    assert outcomes(results) == [(Outcome.STORED, None), HELD]  # seq 3 stored now: seq 2 is placed next
    assert filed(court, sha) == []

    results, receipted = ingest(court, (a.event_topic, late), (snapshot_topic("seal-a", sha), data))
    assert outcomes(results) == [(Outcome.STORED, None), (Outcome.SNAPSHOT, None)]
    assert filed(court, sha) == [(CASE_A, "seal-a")]


def test_a_picture_whose_event_s_successor_names_other_bytes_is_not_held(court: Court) -> None:
    """Seq 3 of A names other bytes than this seq 2: the chain can never place it, its picture is filed at once."""
    a = court.a
    first = a.event(at=T0 + timedelta(minutes=10))
    data, sha = picture(25)
    a.event(at=BEHIND)  # the genuine seq 2, which seq 3 names
    court.send(a, first, a.event(at=T0 + timedelta(minutes=20)))
    unbind_a(court, bound_at=T0, unbound_at=T0 + timedelta(hours=1), then_bind_to=CASE_B)
    moved_long_ago(court.session_factory, "seal-a")
    other = a.event(EventType.INTRUSION, {"armed": True, "snapshots": [sha]}, at=BEHIND, seq=2)

    results, receipted = ingest(court, (a.event_topic, other), (snapshot_topic("seal-a", sha), data))

    assert outcomes(results)[1] == (Outcome.SNAPSHOT, None)
    assert receipted == {"seal-a": [sha]}
    assert filed(court, sha) == [(CASE_B, "seal-a")]
