"""A moved seal's drain cut between transactions: A's run (signed with the seal's clock three weeks behind) in one,
the first event signed for B — whose ``prev_hash`` names the last of A's — in the next. The broker's flow cuts a
drain anywhere (``batch_size``, the linger), and a batch that fails for another seal's message is stored one message
at a time. Either way A's events are placed in A in the end, and B's judge hears nothing of them: no ``case_mismatch``
naming A's intrusion, no ``missing_events`` (server/ingest/case_hold.py, server/ingest/case_retry.py; docs/protocol.md,
"Late events and the chain"). What the chain can never carry still raises ``case_mismatch`` in B: when a stored
successor fails to place it, or at the hold's end if the seal never sends one."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import uuid4

import pytest
from sqlalchemy import select, update

from seal_protocol import EventType
from server.core.db import SessionFactory, session_scope
from server.ingest.case_hold import HELD_LOOKBACK, NO_SUCCESSOR_HOLD
from server.ingest.gap_wait import raise_due_gaps
from server.ingest.models import ChainState, QuarantinedMessage
from server.ingest.receipts import committed_hashes
from server.ingest.results import Message, Outcome, Reason
from server.seals.models import SealBinding
from server.seals.registry import register_seal
from tests.server.helpers import CASE_A, CASE_B, refuse_seq_in_the_database
from tests.server.ingest_world import Court, make_court, resigned
from tests.server.test_late_events import event_cases

INTRUSION = {"armed": True, "warning": "played", "camera": "ok", "snapshots": [], "sensor": "pir"}
STORED = (Outcome.STORED, None)
REFUSED = (Outcome.QUARANTINED, Reason.WRONG_CASE)


@pytest.fixture
def court(session_factory: SessionFactory, tmp_path: Path) -> Court:
    court = make_court(session_factory, tmp_path)  # gap_wait_s 0: a gap raises missing_events at once
    with session_scope(session_factory) as session:  # bound to A two days ago
        query = update(SealBinding).where(SealBinding.device_id == "seal-a")
        session.execute(query.values(bound_at=datetime.now(UTC) - timedelta(days=2)))
    return court


def at_a(court: Court, now: datetime) -> list[bytes]:
    """Seq 1-3, signed for A with the clock 22 days behind: a heartbeat, an intrusion (seq 2), a heartbeat."""
    stale, a = now - timedelta(days=22), court.a
    return [
        a.event(at=stale),
        a.event(EventType.INTRUSION, INTRUSION, at=stale + timedelta(hours=1)),
        a.event(at=stale + timedelta(hours=2)),
    ]


def move_to_b(court: Court) -> None:
    """The clerk moves the seal to B (its binding to A ends now); the officer reconfigures it there."""
    with session_scope(court.session_factory) as session:
        register_seal(session, actor=None, device_id="seal-a", case_no=CASE_B, public_key=court.a.public_key)
    court.a.case_no = CASE_B


def ingest(court: Court, *messages: tuple[str, bytes]) -> tuple[list[tuple[Outcome, Reason | None]], list[str]]:
    """One batch: its outcomes, and the hashes receipted to seal-a."""
    batch = [Message(topic, data, datetime.now(UTC)) for topic, data in messages]
    results = court.ingestor.ingest(batch)
    return [(r.outcome, r.reason) for r in results], committed_hashes(batch, results).get("seal-a", [])


def of_a(court: Court, *events: bytes) -> list[tuple[str, bytes]]:
    return [(court.a.event_topic, data) for data in events]


def alarms_in(court: Court, case_no: str) -> list[tuple[str, str]]:
    return [(al.kind, al.state) for al in court.alarms() if al.case_no == case_no]


def time_passes(court: Court, span: timedelta) -> None:
    """As if ``span`` had passed for the hold: the seal's refusals and its hold's next look that much earlier (the
    round reads the database's clock)."""
    with session_scope(court.session_factory) as session:
        for row in session.scalars(select(QuarantinedMessage).where(QuarantinedMessage.device_id == "seal-a")):
            row.received_at -= span
        for state in session.scalars(select(ChainState).where(ChainState.device_id == "seal-a")):
            if state.case_held_until is not None:
                state.case_held_until -= span


def held_until(court: Court) -> datetime | None:
    return court.chain("seal-a").case_held_until


def test_a_drain_cut_at_a_batch_boundary_tells_b_nothing_of_a(court: Court) -> None:
    """Batch 1: A's seq 1-3, refused (no successor yet) but held back; batch 2: B's seq 4, the gap below it held
    back too; the seal sends A's events again (unreceipted) and they are placed in A. Before the fix batch 1 raised
    a HIGH case_mismatch in B naming A's intrusion, and batch 2 missing_events in B."""
    now = datetime.now(UTC)
    old = at_a(court, now)
    move_to_b(court)
    first_of_b = court.a.event(EventType.AGENT_STARTED, {}, at=now)

    assert ingest(court, *of_a(court, *old)) == ([REFUSED] * 3, [])
    assert court.alarms() == []
    held = held_until(court)  # no successor yet: minutes, not the day (an intrusion signed now may be among them)
    assert held is not None and held <= datetime.now(UTC) + NO_SUCCESSOR_HOLD
    results, receipted = ingest(court, *of_a(court, first_of_b))
    assert (results, len(receipted)) == ([STORED], 1)
    assert court.alarms() == []  # the gap 1-3 is A's run, held back: no missing_events yet
    held = held_until(court)  # the seal went on in B: held while it sends them again
    assert held is not None and held > datetime.now(UTC) + timedelta(hours=12)
    with court.session_factory() as session:
        later = datetime.now(UTC) + 5 * NO_SUCCESSOR_HOLD
        assert raise_due_gaps(session, gap_wait=timedelta(0), lag=timedelta(0), at=later) == []
        session.commit()
    assert court.alarms() == []
    results, receipted = ingest(court, *of_a(court, *old))  # sent again by the seal
    assert (results, len(receipted)) == ([STORED] * 3, 3)

    assert event_cases(court) == [(1, CASE_A), (2, CASE_A), (3, CASE_A), (4, CASE_B)]
    assert alarms_in(court, CASE_B) == []
    assert [(al.kind, al.case_no) for al in court.alarms()] == [("intrusion", CASE_A)]
    assert court.chain("seal-a").missing == []
    assert held_until(court) is None
    assert [row.reason for row in court.quarantine()] == ["wrong_case"] * 3  # the first copies, as before


def test_each_held_refusal_waits_on_its_own(court: Court) -> None:
    """A's run held while the seal, gone on in B, sends it again (the day); an intrusion it then signs for A with a
    stale time (reconfigured back to A, its clock behind: nothing stored above it) waits only its 2 minutes, and is
    raised alone — B is told of its own intrusion, not of A's run."""
    now = datetime.now(UTC)
    old = at_a(court, now)
    move_to_b(court)
    first_of_b = court.a.event(EventType.AGENT_STARTED, {}, at=now)
    assert ingest(court, *of_a(court, *old))[0] == [REFUSED] * 3
    assert ingest(court, *of_a(court, first_of_b))[0] == [STORED]
    late = court.a.event(EventType.INTRUSION, INTRUSION, case_no=CASE_A, at=now - timedelta(days=21))  # seq 5
    assert ingest(court, *of_a(court, late))[0] == [REFUSED]
    assert court.alarms() == []
    held = held_until(court)  # the next look: the fresh one's 2 minutes, not the run's day
    assert held is not None and held <= datetime.now(UTC) + NO_SUCCESSOR_HOLD

    time_passes(court, NO_SUCCESSOR_HOLD + timedelta(seconds=1))
    with court.session_factory() as session:
        assert raise_due_gaps(session, gap_wait=timedelta(0), lag=timedelta(0), at=datetime.now(UTC)) == ["seal-a"]
        session.commit()
    [alarm] = court.alarms()
    assert (alarm.kind, alarm.case_no, alarm.details["seq"], alarm.details["intrusions"]["seqs"]) == (
        "case_mismatch",
        CASE_B,
        5,
        [5],
    )
    held = held_until(court)  # A's run still held, for the day
    assert held is not None and held > datetime.now(UTC) + timedelta(hours=12)
    results, receipted = ingest(court, *of_a(court, *old))  # sent again: placed in A
    assert (results, len(receipted)) == ([STORED] * 3, 3)
    assert [(al.kind, al.case_no) for al in court.alarms()] == [("case_mismatch", CASE_B), ("intrusion", CASE_A)]


def test_a_hold_that_cannot_read_its_whole_run_ends_at_once(court: Court) -> None:
    """More of the seal's refusals than a hold reads back (HELD_LOOKBACK): it keeps nothing back it cannot see —
    case_mismatch is raised at once, naming the intrusion (the oldest, beyond a short look-back)."""
    now = datetime.now(UTC)
    stale, a = now - timedelta(days=22), court.a
    run = [a.event(EventType.INTRUSION, INTRUSION, at=stale)]
    run += [a.event(at=stale + timedelta(seconds=i + 1)) for i in range(HELD_LOOKBACK)]
    move_to_b(court)
    for start in range(0, len(run), 500):
        ingest(court, *of_a(court, *run[start : start + 500]))
    assert ingest(court, *of_a(court, court.a.event(EventType.AGENT_STARTED, {}, at=now)))[0] == [STORED]
    mismatch = [al for al in court.alarms() if al.kind == "case_mismatch"]
    assert [al.case_no for al in mismatch] == [CASE_B]  # (closed by B's event, as case_mismatch is: raised, told)
    assert 1 in mismatch[0].details["intrusions"]["seqs"]
    assert held_until(court) is None


def test_a_seal_that_never_sends_the_successor_gets_case_mismatch_when_the_hold_ends(court: Court) -> None:
    """Moved but still configured for A, its clock behind: nothing the court can tell from A's drain until the hold
    ends; then the round of due gaps raises case_mismatch in B, naming the intrusion. Later refusals raise at once."""
    now = datetime.now(UTC)
    old = at_a(court, now)
    move_to_b(court)
    assert ingest(court, *of_a(court, *old))[0] == [REFUSED] * 3
    with court.session_factory() as session:
        assert raise_due_gaps(session, gap_wait=timedelta(0), lag=timedelta(0), at=now) == []  # not due yet
        session.commit()
    assert court.alarms() == []

    time_passes(court, NO_SUCCESSOR_HOLD + timedelta(seconds=1))  # no successor came: the hold ends
    with court.session_factory() as session:
        assert raise_due_gaps(session, gap_wait=timedelta(0), lag=timedelta(0), at=datetime.now(UTC)) == ["seal-a"]
        session.commit()
    [alarm] = court.alarms()
    assert (alarm.kind, alarm.case_no, alarm.state, alarm.details["seq"]) == ("case_mismatch", CASE_B, "open", 3)
    assert alarm.details["intrusions"]["seqs"] == [2]
    assert held_until(court) is None
    with court.session_factory() as session:  # raised once
        assert raise_due_gaps(session, gap_wait=timedelta(0), lag=timedelta(0), at=datetime.now(UTC)) == []

    with session_scope(court.session_factory) as session:  # B's binding is over a day old: no hold any more
        query = update(SealBinding).where(SealBinding.device_id == "seal-a", SealBinding.case_no == CASE_B)
        session.execute(query.values(bound_at=datetime.now(UTC) - timedelta(days=1, minutes=1)))
    late = court.a.event(EventType.INTRUSION, INTRUSION, case_no=CASE_A, at=now - timedelta(days=21))
    assert ingest(court, *of_a(court, late))[0] == [REFUSED]
    [alarm] = court.alarms()
    assert (alarm.details["seq"], alarm.details["intrusions"]["seqs"]) == (4, [2, 4])
    assert held_until(court) is None


def test_a_stored_successor_that_cannot_place_them_raises_case_mismatch(court: Court) -> None:
    """A's seq 3 as held is not the seq 3 that B's first event names (the genuine one is never sent): once that
    event is stored, the chain can never carry seq 1-3, and case_mismatch is raised in B for them — then closed by
    that newer event, as before; the gap below it raises missing_events."""
    now = datetime.now(UTC)
    old = at_a(court, now)
    move_to_b(court)
    first_of_b = court.a.event(EventType.AGENT_STARTED, {}, at=now)
    other = resigned(old[2], court.a.key, event_id=uuid4())

    assert ingest(court, *of_a(court, old[0], old[1], other))[0] == [REFUSED] * 3
    assert court.alarms() == []
    assert ingest(court, *of_a(court, first_of_b))[0] == [STORED]
    mismatch = court.alarms("case_mismatch")
    assert [(al.case_no, al.details["intrusions"]["seqs"]) for al in mismatch] == [(CASE_B, [2])]
    assert sorted(alarms_in(court, CASE_B)) == [("case_mismatch", "closed"), ("missing_events", "open")]
    assert held_until(court) is None
    assert event_cases(court) == [(4, CASE_B)]


def test_one_message_the_database_refuses_costs_a_moved_seal_nothing(court: Court, database_url: str) -> None:
    """A batch: seal-a's drain (A's run, then B's first event) and a message of seal-b the database refuses. The
    batch fails and is stored one message at a time: seal-b's message alone is quarantined; seal-a's run is placed
    in A as in a batch of its own (before the fix: refused, and case_mismatch and missing_events in B)."""
    refuse_seq_in_the_database(court.session_factory, database_url, seq=50)
    now = datetime.now(UTC)
    old = at_a(court, now)
    move_to_b(court)
    first_of_b = court.a.event(EventType.AGENT_STARTED, {}, at=now)
    court.b.prev_hash = "0" * 64
    poison = court.b.event(at=now, seq=50)

    results, receipted = ingest(court, *of_a(court, *old, first_of_b), (court.b.event_topic, poison))
    assert results == [STORED] * 4 + [(Outcome.QUARANTINED, Reason.STORAGE_ERROR)]
    assert len(receipted) == 4
    assert event_cases(court) == [(1, CASE_A), (2, CASE_A), (3, CASE_A), (4, CASE_B)]
    assert alarms_in(court, CASE_B) == []
    assert held_until(court) is None
