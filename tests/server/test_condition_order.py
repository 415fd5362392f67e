"""A condition's alarm follows the seal's order (``seq``), not the order its events are stored in
(server.ingest.condition_order): several workers, the gap wait's cap, a late predecessor or a restarted worker may
store a seal's recovery before the older event that raised the condition."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, text

from seal_protocol import EventType
from server.config import AlarmSettings
from server.core.db import SessionFactory, make_session_factory
from server.core.metrics import IngestMetrics
from server.ingest.ingestor import Ingestor
from server.ingest.results import Message, Outcome
from tests.server.ingest_world import Court, make_court
from tests.server.pg_locks import Side, wait_for_lock_waits

T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
UNSYNCED = {"clock": {"synced": False, "max_error_ms": 16000}}
SYNCED = {"clock": {"synced": True, "max_error_ms": 12}}
UNKNOWN = {"clock": {"synced": None, "max_error_ms": None}}
FAILED = {"trigger": "intrusion", "trigger_seq": 1, "warning": "failed", "warning_languages": []}
PLAYED = {"trigger": "intrusion", "trigger_seq": 1, "warning": "played", "warning_languages": []}

Word = tuple[EventType, dict[str, Any]]
#: Each condition an event raises and another closes: (alarm kind, the raise, the recovery).
CONDITIONS: list[tuple[str, Word, Word]] = [
    ("camera_blind", (EventType.CAMERA_BLIND, {"reason": "uniform"}), (EventType.CAMERA_RECOVERED, {})),
    ("camera_lost", (EventType.CAMERA_LOST, {}), (EventType.CAMERA_FOUND, {})),
    ("sensor_flapping", (EventType.SENSOR_FLAPPING, {"sensor": "pir"}), (EventType.SENSOR_NORMAL, {"sensor": "pir"})),
    ("sensor_stuck", (EventType.SENSOR_STUCK, {"sensor": "pir"}), (EventType.SENSOR_UNSTUCK, {"sensor": "pir"})),
    ("speaker_failed", (EventType.HEARTBEAT, {"speaker": "failed"}), (EventType.HEARTBEAT, {"speaker": "ok"})),
    ("speaker_failed", (EventType.WARNING_RESULT, FAILED), (EventType.WARNING_RESULT, PLAYED)),
    ("clock_unsynced", (EventType.HEARTBEAT, UNSYNCED), (EventType.HEARTBEAT, SYNCED)),
    ("clock_unsynced", (EventType.HEARTBEAT, UNSYNCED), (EventType.CLOCK_STEPPED, {"step_ms": 9000, "synced": True})),
]
IDS = [
    "camera_blind",
    "camera_lost",
    "sensor_flapping",
    "sensor_stuck",
    "speaker-heartbeat",
    "speaker-warning",
    "clock-heartbeat",
    "clock-step",
]
each_condition = pytest.mark.parametrize(("kind", "trouble", "recovery"), CONDITIONS, ids=IDS)


@pytest.fixture
def court(session_factory: SessionFactory, tmp_path: Path) -> Court:
    return make_court(session_factory, tmp_path)


def _states(court: Court, kind: str) -> list[str]:
    return [a.state for a in court.alarms(kind)]


def _at(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


@each_condition
def test_a_recovery_stored_before_its_older_raise_leaves_no_alarm(
    court: Court, kind: str, trouble: Word, recovery: Word
) -> None:
    a = court.a
    raised, recovered = a.event(*trouble), a.event(*recovery)  # seq 1, seq 2
    assert court.send(a, recovered, at=_at(0))[0].outcome is Outcome.STORED
    assert court.send(a, raised, at=_at(1))[0].outcome is Outcome.STORED  # stored: the evidence stands
    assert court.seqs(a.device_id) == [1, 2]
    assert _states(court, kind) == []  # the seal's newest word: all is well


@each_condition
def test_reversed_in_one_batch_the_older_raise_opens_nothing(
    court: Court, kind: str, trouble: Word, recovery: Word
) -> None:
    """A batch applies its messages in the order received: the recovery, stored first, is the seal's newest word, and
    the older raise after it in the same batch opens nothing (as across batches)."""
    a = court.a
    raised, recovered = a.event(*trouble), a.event(*recovery)
    court.send(a, recovered, raised, at=_at(0))
    assert _states(court, kind) == []


@each_condition
def test_a_raise_then_its_recovery_open_then_close(court: Court, kind: str, trouble: Word, recovery: Word) -> None:
    a = court.a
    court.send(a, a.event(*trouble), at=_at(0))
    assert _states(court, kind) == ["open"]
    court.send(a, a.event(*recovery), at=_at(1))
    assert _states(court, kind) == ["closed"]


@each_condition
def test_a_raise_newer_than_a_recovery_stored_first_opens(
    court: Court, kind: str, trouble: Word, recovery: Word
) -> None:
    a = court.a
    older, recovered, newer = a.event(*trouble), a.event(*recovery), a.event(*trouble)  # seq 1, 2, 3
    court.send(a, recovered, at=_at(0))
    court.send(a, newer, at=_at(1))
    [alarm] = court.alarms(kind)
    assert (alarm.state, alarm.details["seq"]) == ("open", 3)
    court.send(a, older, at=_at(2))  # the newest word before it stored says the condition holds: as before
    assert _states(court, kind) == ["open"]


@each_condition
def test_in_the_seals_order_in_one_batch_an_episode_still_opens_and_closes(
    court: Court, kind: str, trouble: Word, recovery: Word
) -> None:
    a = court.a
    court.send(a, a.event(*trouble), a.event(*trouble), a.event(*recovery), at=_at(0))
    [alarm] = court.alarms(kind)
    assert alarm.state == "closed" and alarm.first_event_id is not None
    assert alarm.closed_note is not None and "seq 3" in alarm.closed_note


@each_condition
def test_an_older_recovery_does_not_close_the_alarm_of_a_newer_raise(
    court: Court, kind: str, trouble: Word, recovery: Word
) -> None:
    a = court.a
    court.send(a, a.event(EventType.HEARTBEAT), at=_at(0))  # seq 1: says nothing of any condition
    recovered, raised = a.event(*recovery), a.event(*trouble)  # seq 2, 3
    court.send(a, raised, at=_at(1))
    court.send(a, recovered, at=_at(2))  # late: the seal said "failed again" after it
    assert _states(court, kind) == ["open"]
    court.send(a, a.event(*recovery), at=_at(3))  # seq 4: the newest word
    assert _states(court, kind) == ["closed"]


def test_words_on_other_conditions_and_events_that_say_nothing_do_not_count(court: Court) -> None:
    """Above the late ``clock_unsynced`` heartbeat: a camera recovery and more than a page of heartbeats whose clock
    says nothing — no word on the clock, so it raises; below a synchronised heartbeat a page further, it does not."""
    a = court.a
    late = a.event(EventType.HEARTBEAT, UNSYNCED)  # seq 1
    court.send(a, a.event(EventType.CAMERA_RECOVERED), *(a.event(EventType.HEARTBEAT, UNKNOWN) for _ in range(60)))
    court.send(a, late, at=_at(1))
    assert _states(court, "clock_unsynced") == ["open"]

    b = court.b
    late = b.event(EventType.HEARTBEAT, UNSYNCED)  # seq 1
    synced = b.event(EventType.HEARTBEAT, SYNCED)  # seq 2, below 60 that say nothing
    court.send(b, synced, *(b.event(EventType.HEARTBEAT, UNKNOWN) for _ in range(60)))
    court.send(b, late, at=_at(1))
    assert [x.device_id for x in court.alarms("clock_unsynced")] == ["seal-a"]


def test_a_stored_event_older_than_the_refused_one_does_not_close_case_mismatch(court: Court) -> None:
    """The seal reconfigured with a wrong case number: its seq 2 is refused (``case_mismatch``); its seq 1, made
    while it still named its case, stored after it, is no sign that it was put right. Its seq 3 in its case is."""
    a = court.a
    right, wrong = a.event(), a.event(case_no="2021苏0214执1234号")
    court.send(a, wrong, at=_at(0))
    assert _states(court, "case_mismatch") == ["open"]
    assert court.send(a, right, at=_at(1))[0].outcome is Outcome.STORED
    assert _states(court, "case_mismatch") == ["open"]
    court.send(a, a.event(seq=3), at=_at(2))
    assert _states(court, "case_mismatch") == ["closed"]


@pytest.mark.parametrize(("kind", "trouble", "recovery"), CONDITIONS[::2], ids=IDS[::2])
def test_two_workers_storing_the_recovery_and_its_older_raise_at_once_leave_no_alarm(
    pg_engine: Engine,
    session_factory: SessionFactory,
    court: Court,
    tmp_path: Path,
    kind: str,
    trouble: Word,
    recovery: Word,
) -> None:
    """PostgreSQL: the worker with the recovery takes the seal's chain state first and commits; the one with the older
    raise, queued behind it on that lock, reads the recovery then, and opens nothing."""
    a = court.a
    court.send(a, a.event(EventType.HEARTBEAT))  # the seal's chain state exists: both workers lock it
    raised, recovered = a.event(*trouble), a.event(*recovery)
    factory = make_session_factory(pg_engine)
    one, two = (
        Ingestor(factory, metrics=IngestMetrics(), snapshot_dir=tmp_path / name, alarms=AlarmSettings())
        for name in ("1", "2")
    )
    with pg_engine.connect() as pin:
        pin.execute(text("SELECT 1 FROM chain_state WHERE device_id = :d FOR UPDATE"), {"d": a.device_id})
        first = Side(lambda: one.ingest([Message(a.event_topic, recovered, _at(0))]))
        wait_for_lock_waits(pg_engine, 1)
        second = Side(lambda: two.ingest([Message(a.event_topic, raised, _at(0))]))
        wait_for_lock_waits(pg_engine, 2)
        pin.rollback()
        assert [r.outcome for r in first.join() + second.join()] == [Outcome.STORED, Outcome.STORED]
    assert court.seqs(a.device_id) == [1, 2, 3]
    assert _states(court, kind) == []
