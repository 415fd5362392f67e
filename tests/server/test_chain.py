"""The hash chain of each seal: links checked on both sides, gaps raise ``missing_events`` until they are filled."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import delete

from seal_protocol import EventType, envelope_hash
from server.core.db import SessionFactory
from server.ingest.models import ChainState
from server.ingest.results import Outcome, Reason
from tests.server.helpers import message
from tests.server.ingest_world import Court, make_court, resigned


@pytest.fixture
def court(session_factory: SessionFactory, tmp_path: Path) -> Court:
    return make_court(session_factory, tmp_path)


def test_events_in_order_leave_a_complete_chain_and_no_alarm(court: Court) -> None:
    events = [court.a.event() for _ in range(5)]
    court.send(court.a, *events[:2])
    court.send(court.a, *events[2:])

    assert court.seqs("seal-a") == [1, 2, 3, 4, 5]
    state = court.chain("seal-a")
    assert (state.max_seq, state.missing) == (5, [])
    assert court.alarms() == []


def test_gap_opens_missing_events_and_late_events_close_it(court: Court) -> None:
    events = [court.a.event() for _ in range(5)]
    court.send(court.a, events[0], events[1])

    results = court.send(court.a, events[4])  # 3 and 4 are still in the seal's outbox
    assert [r.outcome for r in results] == [Outcome.STORED]
    [alarm] = court.alarms()
    assert (alarm.kind, alarm.severity, alarm.state) == ("missing_events", "high", "open")
    assert alarm.case_no == court.a.case_no
    assert alarm.details["missing"] == [[3, 4]] and alarm.details["missing_count"] == 2

    court.send(court.a, events[3])  # the outbox drains after a reconnect
    [alarm] = court.alarms()
    assert alarm.state == "open" and alarm.details["missing"] == [[3, 3]]

    court.send(court.a, events[2])
    [alarm] = court.alarms()
    assert alarm.state == "closed" and alarm.closed_by is None
    assert alarm.closed_note is not None and alarm.closed_note.startswith("system:")
    assert court.seqs("seal-a") == [1, 2, 3, 4, 5]
    assert court.chain("seal-a").missing == []
    assert court.quarantine() == []


def test_second_gap_folds_into_the_open_alarm(court: Court) -> None:
    events = [court.a.event() for _ in range(5)]
    court.send(court.a, events[0])
    court.send(court.a, events[2])
    court.send(court.a, events[4])

    [alarm] = court.alarms()
    assert alarm.count == 2 and alarm.details["missing"] == [[2, 2], [4, 4]]
    court.send(court.a, events[3], events[1])
    assert court.alarms()[0].state == "closed"


def test_out_of_order_within_one_batch_raises_no_alarm(court: Court) -> None:
    events = [court.a.event() for _ in range(4)]
    results = court.send(court.a, events[0], events[3], events[2], events[1])

    assert all(r.outcome is Outcome.STORED for r in results)
    assert court.seqs("seal-a") == [1, 2, 3, 4]
    assert court.alarms() == []


def test_broken_link_at_the_head_is_quarantined(court: Court) -> None:
    events = [court.a.event() for _ in range(3)]
    court.send(court.a, events[0], events[1])
    forged = resigned(events[2], court.a.key, prev_hash="ab" * 32)

    [result] = court.send(court.a, forged)

    assert (result.outcome, result.reason) == (Outcome.QUARANTINED, Reason.BROKEN_CHAIN)
    [row] = court.quarantine()
    assert row.reason == "broken_chain" and row.raw == forged and "seq 3" in row.detail
    assert court.seqs("seal-a") == [1, 2]
    [real] = court.send(court.a, events[2])
    assert real.outcome is Outcome.STORED
    assert court.metrics.snapshot().rejected == {"broken_chain": 1}


def test_forged_event_in_the_middle_of_a_gap_is_refused_by_its_successor(court: Court) -> None:
    """A forged seq 3 that links to the stored seq 2 does not fit under the stored seq 4: refused."""
    events = [court.a.event() for _ in range(5)]
    court.send(court.a, events[0], events[1], events[3], events[4])
    forged = resigned(events[2], court.a.key, type=EventType.HEARTBEAT, payload={"uptime_s": 1})
    assert forged != events[2]

    [result] = court.send(court.a, forged)

    assert (result.outcome, result.reason) == (Outcome.QUARANTINED, Reason.BROKEN_CHAIN)
    assert f"stored seq 4 names previous {envelope_hash(events[2])}" in court.quarantine()[0].detail
    [alarm] = court.alarms("missing_events")
    assert alarm.state == "open" and alarm.details["missing"] == [[3, 3]]
    court.send(court.a, events[2])
    assert court.alarms("missing_events")[0].state == "closed"
    assert court.seqs("seal-a") == [1, 2, 3, 4, 5]


def test_forged_successor_is_refused_by_its_stored_predecessor(court: Court) -> None:
    events = [court.a.event() for _ in range(4)]
    court.send(court.a, events[0], events[1], events[3])
    forged = resigned(events[2], court.a.key, prev_hash="cd" * 32)

    [result] = court.send(court.a, forged)

    assert result.reason is Reason.BROKEN_CHAIN
    assert court.seqs("seal-a") == [1, 2, 4]


@pytest.mark.parametrize(
    ("seq", "prev_hash", "expected"),
    [(1, "ab" * 32, "seq 1 must have prev_hash null"), (2, None, "seq 2 has prev_hash null")],
)
def test_prev_hash_must_be_null_exactly_for_seq_1(court: Court, seq: int, prev_hash: str | None, expected: str) -> None:
    events = [court.a.event() for _ in range(2)]
    if seq == 2:
        court.send(court.a, events[0])
    bad = resigned(events[seq - 1], court.a.key, prev_hash=prev_hash)

    [result] = court.send(court.a, bad)

    assert result.reason is Reason.BROKEN_CHAIN
    assert expected in court.quarantine()[0].detail
    assert court.seqs("seal-a") == ([1] if seq == 2 else [])


def test_redelivery_after_the_gap_closed_is_a_no_op(court: Court) -> None:
    events = [court.a.event() for _ in range(3)]
    court.send(court.a, events[0], events[2])
    court.send(court.a, events[1])
    results = court.send(court.a, *events)

    assert [r.outcome for r in results] == [Outcome.DUPLICATE] * 3
    [alarm] = court.alarms()
    assert alarm.state == "closed" and alarm.count == 1


def test_chain_state_is_rebuilt_from_stored_events(court: Court, session_factory: SessionFactory) -> None:
    """Events stored before chain states existed (or a lost state row): the state is rebuilt from the events."""
    events = [court.a.event() for _ in range(5)]
    court.send(court.a, events[0], events[1], events[3])
    with session_factory.begin() as session:
        session.execute(delete(ChainState))

    court.send(court.a, events[4])
    state = court.chain("seal-a")
    assert (state.max_seq, state.missing) == (5, [[3, 3]])
    court.send(court.a, events[2])
    assert court.chain("seal-a").missing == []
    assert court.alarms()[0].state == "closed"


def test_chains_of_two_seals_are_separate_in_one_batch(court: Court) -> None:
    a_events = [court.a.event() for _ in range(3)]
    b_events = [court.b.event() for _ in range(3)]
    court.ingestor.ingest(
        [message(court.a.event_topic, a_events[0]), message(court.a.event_topic, a_events[2])]
        + [message(court.b.event_topic, data) for data in b_events]
    )

    [alarm] = court.alarms()
    assert (alarm.device_id, alarm.case_no, alarm.details["missing"]) == ("seal-a", court.a.case_no, [[2, 2]])
    assert court.seqs("seal-b") == [1, 2, 3]
