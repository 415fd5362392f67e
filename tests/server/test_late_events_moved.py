"""A seal moved from case A to case B whose clock was behind all the while it was at A (a Raspberry Pi restored
from an old save, NTP never answered there): none of A's events falls within A's binding by its time, and the last
of them has its successor in B — the first event the seal signed for B, whose ``prev_hash`` names its bytes. The
chain carries the run across the move (:func:`server.ingest.late_chain.across_move`): every one is stored in A,
late, its intrusion alarmed in A, receipted; B gets none of A's events, no ``case_mismatch`` about them and no gap
(docs/protocol.md, "Late events and the chain")."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import update

from seal_protocol import EventType, envelope_hash, snapshot_topic
from server.core.db import SessionFactory, session_scope
from server.ingest.receipts import committed_hashes
from server.ingest.results import IngestResult, Message, Outcome, Reason
from server.seals.models import SealBinding
from server.seals.registry import register_seal
from tests.server.helpers import CASE_A, CASE_B
from tests.server.ingest_world import Court, make_court, resigned
from tests.server.test_late_events import event_cases
from tests.server.test_late_events_chain import filed, outcomes, picture
from tests.server.test_late_events_chain import ingest as ingest_messages

NOW = datetime.now(UTC).replace(microsecond=0)  # set again at each test's start (:func:`_now`)
STALE = NOW - timedelta(days=22)  # the seal's clock at A: three weeks behind
INTRUSION = {"armed": True, "warning": "played", "camera": "ok", "snapshots": [], "sensor": "pir"}
STORED = (Outcome.STORED, None)
REFUSED = (Outcome.QUARANTINED, Reason.WRONG_CASE)


@pytest.fixture(autouse=True)
def _now() -> None:
    """The test's now, taken when it starts: the clerk's move ends A's binding at the real time, and the rule placed
    on it (an event stamped more than 5 minutes after that end is not A's) must not see the minutes between this
    module's import and the test (a slow run, the whole suite on a busy machine)."""
    global NOW, STALE  # noqa: PLW0603 - the module's times, as every helper here reads them
    NOW = datetime.now(UTC).replace(microsecond=0)
    STALE = NOW - timedelta(days=22)


@pytest.fixture
def court(session_factory: SessionFactory, tmp_path: Path) -> Court:
    court = make_court(session_factory, tmp_path)
    with session_scope(session_factory) as session:  # bound to A two days ago
        query = update(SealBinding).where(SealBinding.device_id == "seal-a")
        session.execute(query.values(bound_at=NOW - timedelta(days=2)))
    return court


def at_a(court: Court) -> list[bytes]:
    """Seq 1-8, signed for A with the clock behind: started, heartbeats, an intrusion (seq 7), a heartbeat."""
    a = court.a
    events = [a.event(EventType.AGENT_STARTED, {}, at=STALE)]
    events += [a.event(at=STALE + timedelta(minutes=10 * i)) for i in range(1, 6)]
    events.append(a.event(EventType.INTRUSION, INTRUSION, at=STALE + timedelta(hours=1)))
    events.append(a.event(at=STALE + timedelta(hours=2)))
    return events


def move_to_b(court: Court) -> None:
    """The clerk moves the seal to B (its binding to A ends now); the officer reconfigures it there."""
    with session_scope(court.session_factory) as session:
        register_seal(session, actor=None, device_id="seal-a", case_no=CASE_B, public_key=court.a.public_key)
    court.a.case_no = CASE_B


def ingest(court: Court, *events: bytes) -> tuple[list[tuple[Outcome, Reason | None]], list[str]]:
    """One batch of seal-a's events: their outcomes, and the hashes receipted to the seal."""
    batch = [Message(court.a.event_topic, data, datetime.now(UTC)) for data in events]
    results: list[IngestResult] = court.ingestor.ingest(batch)
    return [(r.outcome, r.reason) for r in results], committed_hashes(batch, results).get("seal-a", [])


def kinds(court: Court) -> list[tuple[str, str, str, bool]]:
    return sorted((al.kind, al.case_no, al.state, bool(al.details.get("late"))) for al in court.alarms())


def test_a_moved_seal_s_stale_clock_events_are_stored_in_their_old_case(court: Court) -> None:
    """The reviewer's case: the seal drains its outbox in order (A's seq 1-8, then B's 9-10), three times."""
    old = at_a(court)
    move_to_b(court)
    new = [court.a.event(EventType.AGENT_STARTED, {}, at=NOW), court.a.event(at=NOW + timedelta(seconds=1))]

    for attempt in range(3):
        results, receipted = ingest(court, *old, *new)
        assert results == [STORED if attempt == 0 else (Outcome.DUPLICATE, None)] * 10
        assert sorted(receipted) == sorted(envelope_hash(data) for data in old + new)  # the seal deletes them

    assert event_cases(court) == [(seq, CASE_A) for seq in range(1, 9)] + [(9, CASE_B), (10, CASE_B)]
    # A's intrusion is A's judge's (late: the seal has left); B has no case_mismatch about it, and no gap
    assert kinds(court) == [("intrusion", CASE_A, "open", True)]
    assert court.chain("seal-a").missing == []
    assert court.quarantine() == []


def test_a_drain_split_over_batches_and_sent_again_out_of_order_fills_the_gap(court: Court) -> None:
    """Each event is placed once its successor is stored, whichever batch brings it: B's seq 9 first, then A's
    events from any order. The gap B's first events left (seq 1-8) raised ``missing_events``; it closes once A's
    events fill it."""
    old = at_a(court)
    move_to_b(court)
    new = [court.a.event(EventType.AGENT_STARTED, {}, at=NOW), court.a.event(at=NOW + timedelta(seconds=1))]

    assert ingest(court, *new)[0] == [STORED] * 2
    assert [(al.kind, al.case_no, al.state) for al in court.alarms()] == [("missing_events", CASE_B, "open")]
    assert ingest(court, old[2])[0] == [REFUSED]  # seq 3: seq 4 is not stored yet; older than seq 10, no alarm
    assert ingest(court, old[7], old[5], old[6])[0] == [STORED] * 3  # seq 8 (placed by 9), 6 (once 7 is), 7
    results, receipted = ingest(court, old[1], old[0], *old[2:5])
    assert results == [STORED] * 5
    assert len(receipted) == 5

    assert event_cases(court) == [(seq, CASE_A) for seq in range(1, 9)] + [(9, CASE_B), (10, CASE_B)]
    assert court.chain("seal-a").missing == []
    assert kinds(court) == [("intrusion", CASE_A, "open", True), ("missing_events", CASE_B, "closed", False)]


def test_what_the_chain_does_not_tie_to_a_case_the_seal_left_stays_refused(court: Court) -> None:
    """Each followed by an event of B naming its bytes, and refused as before (``case_mismatch`` in B, closed by
    that event): one naming a case the seal was never bound to; one naming A that the seal's clock puts after the
    move (a seal moved but still configured for A, its clock right: its events at B's premises are not A's); and
    one naming A whose bytes are not those the event above it names (the genuine seq 6 is never sent)."""
    a = court.a
    assert ingest(court, a.event(at=STALE))[0] == [STORED]  # seq 1, while bound to A: A's
    move_to_b(court)
    never = a.event(EventType.INTRUSION, INTRUSION, case_no="(2023)苏0214执9号", at=STALE + timedelta(hours=1))
    b3 = a.event(at=NOW)
    after_move = a.event(EventType.INTRUSION, INTRUSION, case_no=CASE_A, at=NOW + timedelta(minutes=10))
    b5 = a.event(at=NOW + timedelta(minutes=11))
    genuine = a.event(EventType.INTRUSION, INTRUSION, case_no=CASE_A, at=STALE + timedelta(hours=2))
    b7 = a.event(at=NOW + timedelta(minutes=12))
    other = resigned(genuine, a.key, payload={**INTRUSION, "armed": False})

    results, _ = ingest(court, never, b3, after_move, b5, other, b7)
    assert results == [REFUSED, STORED] * 3
    assert ingest(court, never, after_move, other)[0] == [REFUSED] * 3  # sent again: nothing places them
    assert event_cases(court) == [(1, CASE_A), (3, CASE_B), (5, CASE_B), (7, CASE_B)]
    mismatches = court.alarms("case_mismatch")
    assert [(al.case_no, al.state, al.details["seq"]) for al in mismatches] == [
        (CASE_B, "closed", 2),
        (CASE_B, "closed", 4),
        (CASE_B, "closed", 6),
    ]
    assert court.alarms("intrusion") == []


def test_the_picture_of_an_intrusion_the_chain_will_carry_across_the_move_is_never_filed_in_b(court: Court) -> None:
    """Moved more than a day ago (the move's own hold-back is over): the intrusion's picture comes with it, before
    B's first event; then again once B's first event is stored, which will carry the intrusion into A. It waits
    both times (it was filed in B, receipted, the second time), and is filed in A with its event."""
    a = court.a
    data, sha = picture(31)
    intrusion = a.event(EventType.INTRUSION, {**INTRUSION, "snapshots": [sha]}, at=STALE)
    move_to_b(court)
    with session_scope(court.session_factory) as session:  # A from 3 days ago to 25 hours ago, then B
        moved = NOW - timedelta(hours=25)
        query = update(SealBinding).where(SealBinding.device_id == "seal-a")
        session.execute(query.where(SealBinding.case_no == CASE_A).values(bound_at=NOW - timedelta(days=3)))
        session.execute(query.where(SealBinding.case_no == CASE_A).values(unbound_at=moved))
        session.execute(query.where(SealBinding.case_no == CASE_B).values(bound_at=moved))
    shown = (snapshot_topic("seal-a", sha), data)

    results, receipted = ingest_messages(court, (a.event_topic, intrusion), shown)
    assert (outcomes(results), receipted, filed(court, sha)) == ([REFUSED, REFUSED], {}, [])
    assert ingest(court, a.event(at=NOW))[0] == [STORED]  # B's first event, naming the intrusion's bytes
    results, receipted = ingest_messages(court, shown)
    assert (outcomes(results), receipted, filed(court, sha)) == ([REFUSED], {}, [])

    results, receipted = ingest_messages(court, (a.event_topic, intrusion), shown)
    assert outcomes(results) == [STORED, (Outcome.SNAPSHOT, None)]
    assert sorted(receipted["seal-a"]) == sorted([envelope_hash(intrusion), sha])
    assert event_cases(court) == [(1, CASE_A), (2, CASE_B)]
    assert filed(court, sha) == [(CASE_A, "seal-a")]
