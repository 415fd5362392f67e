"""Alarms raised by the ingest: kinds and severities, folding, recoveries, and the people's transitions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from seal_protocol import EventType, encode_status
from seal_protocol.status import SealStatus
from server.alarms import AlarmState, transition
from server.alarms.service import acknowledge_alarm, close_alarm, count_live_by_kind, get_alarm, list_alarms
from server.core.db import SessionFactory, session_scope
from server.errors import Conflict, NotFound
from server.ingest.results import Message
from tests.server.ingest_world import Court, make_court

T0 = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)


@pytest.fixture
def court(session_factory: SessionFactory, tmp_path: Path) -> Court:
    return make_court(session_factory, tmp_path, fold_window_s=60)


@pytest.mark.parametrize(
    ("event_type", "severity"),
    [
        (EventType.INTRUSION, "high"),
        (EventType.TAMPER, "critical"),
        (EventType.CAMERA_BLIND, "medium"),
        (EventType.CAMERA_LOST, "medium"),
        (EventType.OUTBOX_FULL, "medium"),
        (EventType.SNAPSHOT_LOST, "high"),
    ],
)
def test_alarming_event_opens_an_alarm_of_its_kind(court: Court, event_type: EventType, severity: str) -> None:
    court.send(court.a, court.a.event(), at=T0)
    court.send(court.a, court.a.event(event_type, {"armed": True, "warning": "played"}), at=T0)

    [alarm] = court.alarms()
    assert (alarm.kind, alarm.severity, alarm.state, alarm.count) == (event_type.value, severity, "open", 1)
    assert (alarm.case_no, alarm.device_id, alarm.opened_at) == (court.a.case_no, "seal-a", T0)
    assert alarm.first_event_id is not None and alarm.first_event_id == alarm.last_event_id
    assert alarm.details["seq"] == 2 and alarm.details["warning"] == "played"


def test_a_payload_cannot_write_over_the_facts_the_court_puts_in_an_alarm(court: Court) -> None:
    """The alarm's details (and the webhook made from them) say the envelope's type, seq and time, and whether the
    court found the event late — whatever keys of those names the seal's signed payload carries."""
    court.send(court.a, court.a.event(), at=T0)
    lying = {"armed": True, "warning": "played", "seq": 424242, "event_type": "heartbeat", "ts": "1999", "late": True}
    court.send(court.a, court.a.event(EventType.INTRUSION, {**lying, "disarmed_while_sealed": True}), at=T0)

    [alarm] = court.alarms()
    assert (alarm.details["seq"], alarm.details["event_type"]) == (2, "intrusion")
    assert alarm.details["ts"] != "1999" and not {"late", "disarmed_while_sealed"} & alarm.details.keys()
    assert alarm.details["warning"] == "played"  # the rest of the payload is kept


def test_heartbeats_and_unconfirmed_intrusions_raise_nothing(court: Court) -> None:
    """(A disarmed seal's intrusions and tampers: tests/server/test_disarmed_alarms.py.)"""
    court.send(
        court.a,
        court.a.event(),
        court.a.event(EventType.INTRUSION, {"armed": True, "warning": "suppressed_not_seen"}),
        court.a.event(EventType.HEARTBEAT, {"armed": False}),
    )
    assert court.seqs("seal-a") == [1, 2, 3]
    assert court.alarms() == []


def test_an_intrusion_awaiting_camera_confirmation_alarms_only_once_confirmed(court: Court) -> None:
    court.send(
        court.a,
        court.a.event(),
        court.a.event(EventType.INTRUSION, {"armed": True, "warning": "pending_confirmation"}),  # seq 2
        court.a.event(
            EventType.SNAPSHOT_TAKEN,
            {"trigger": "intrusion", "trigger_seq": 2, "warning": "suppressed_not_seen", "snapshots": []},
        ),
        court.a.event(EventType.INTRUSION, {"armed": True, "warning": "pending_confirmation"}),  # seq 4
    )
    assert court.alarms() == []  # the first was not confirmed, the second is still undecided

    court.send(
        court.a,
        court.a.event(
            EventType.SNAPSHOT_TAKEN, {"trigger": "intrusion", "trigger_seq": 4, "warning": "played", "snapshots": []}
        ),
    )
    [alarm] = court.alarms()
    assert (alarm.kind, alarm.details["trigger_seq"], alarm.details["event_type"]) == ("intrusion", 4, "snapshot_taken")
    # A follow-up without a pending decision (the usual case) raises nothing.
    court.send(court.a, court.a.event(EventType.SNAPSHOT_TAKEN, {"trigger": "tamper", "trigger_seq": 6}))
    assert len(court.alarms()) == 1 and court.alarms()[0].count == 1


def test_repeats_within_the_fold_window_fold_and_later_ones_open_a_new_alarm(court: Court) -> None:
    court.send(court.a, court.a.event(EventType.INTRUSION), at=T0)
    court.send(court.a, court.a.event(EventType.INTRUSION), at=T0 + timedelta(seconds=30))
    court.send(court.a, court.a.event(EventType.INTRUSION), at=T0 + timedelta(seconds=80))  # 50 s after the last
    [folded] = court.alarms()
    assert (folded.count, folded.opened_at, folded.last_seen_at) == (3, T0, T0 + timedelta(seconds=80))
    assert folded.last_event_id != folded.first_event_id and folded.details["seq"] == 3

    court.send(court.a, court.a.event(EventType.INTRUSION), at=T0 + timedelta(seconds=200))
    assert [(a.count, a.state) for a in court.alarms()] == [(3, "open"), (1, "open")]


@pytest.mark.parametrize("kind", [EventType.TAMPER, EventType.INTRUSION])
def test_a_repeat_after_the_acknowledgement_opens_a_new_alarm(
    court: Court, session_factory: SessionFactory, kind: EventType
) -> None:
    """Acknowledged ("officer on the way"), then a new break-in within the fold window: a new open alarm (alerted,
    notified), not a count on the acknowledged one — which, its window sliding, kept every later one silent."""
    court.send(court.a, court.a.event(kind), at=T0)
    [alarm] = court.alarms()
    with session_scope(session_factory) as session:
        acknowledge_alarm(session, alarm_id=alarm.id, user_id=7, note="officer on the way")

    court.send(court.a, court.a.event(kind), at=T0 + timedelta(seconds=10))
    court.send(court.a, court.a.event(kind), at=T0 + timedelta(seconds=20))  # folds into the new, open one
    alarms = sorted(court.alarms(), key=lambda a: a.id)
    assert [(a.kind, a.state, a.count) for a in alarms] == [
        (kind.value, "acknowledged", 1),
        (kind.value, "open", 2),
    ]


def test_other_kinds_and_other_seals_do_not_fold(court: Court) -> None:
    court.send(court.a, court.a.event(EventType.INTRUSION), court.a.event(EventType.TAMPER), at=T0)
    court.send(court.b, court.b.event(EventType.INTRUSION), at=T0)
    assert sorted((a.device_id, a.kind) for a in court.alarms()) == [
        ("seal-a", "intrusion"),
        ("seal-a", "tamper"),
        ("seal-b", "intrusion"),
    ]


@pytest.mark.parametrize(
    ("trouble", "recovery"),
    [(EventType.CAMERA_BLIND, EventType.CAMERA_RECOVERED), (EventType.CAMERA_LOST, EventType.CAMERA_FOUND)],
)
def test_recovery_event_closes_the_camera_alarm(court: Court, trouble: EventType, recovery: EventType) -> None:
    court.send(court.a, court.a.event(trouble), court.a.event(EventType.INTRUSION), at=T0)
    court.send(court.a, court.a.event(recovery), at=T0 + timedelta(seconds=5))

    by_kind = {a.kind: a for a in court.alarms()}
    camera = by_kind[trouble.value]
    assert (camera.state, camera.closed_by, camera.closed_at) == ("closed", None, T0 + timedelta(seconds=5))
    assert camera.closed_note == f"system: {recovery.value} (seq 3)"
    assert by_kind["intrusion"].state == "open"


def _status(court: Court, state: SealStatus, at: datetime) -> None:
    court.ingestor.ingest([Message(court.a.status_topic, encode_status(state), at)])


def test_offline_status_opens_offline_and_online_does_not_close_it(court: Court) -> None:
    _status(court, SealStatus.OFFLINE, T0)
    [alarm] = court.alarms()
    assert (alarm.kind, alarm.severity, alarm.state, alarm.details["reason"]) == (
        "offline",
        "high",
        "open",
        "offline_status",
    )
    _status(court, SealStatus.OFFLINE, T0 + timedelta(hours=2))  # a condition folds whatever the window
    assert court.alarms()[0].count == 2

    _status(court, SealStatus.ONLINE, T0 + timedelta(hours=3))  # not signed: only the seal's next event closes it
    [alarm] = court.alarms()
    assert alarm.state == "open"


def test_new_event_closes_offline(court: Court) -> None:
    _status(court, SealStatus.OFFLINE, T0)
    court.send(court.a, court.a.event(), at=T0 + timedelta(seconds=30))
    [alarm] = court.alarms()
    assert alarm.state == "closed" and alarm.closed_note == "system: event seq 1 received"


def test_redelivered_alarming_event_does_not_count_twice(court: Court) -> None:
    data = court.a.event(EventType.INTRUSION)
    court.send(court.a, data, at=T0)
    court.send(court.a, data, data, at=T0 + timedelta(seconds=1))
    [alarm] = court.alarms()
    assert alarm.count == 1


# -- the people's transitions -----------------------------------------------------------------------------------


def test_transition_function() -> None:
    assert transition("open", AlarmState.ACKNOWLEDGED) is AlarmState.ACKNOWLEDGED
    assert transition(AlarmState.OPEN, AlarmState.CLOSED) is AlarmState.CLOSED
    assert transition("acknowledged", AlarmState.CLOSED) is AlarmState.CLOSED
    for current, target in [
        ("open", AlarmState.OPEN),
        ("acknowledged", AlarmState.ACKNOWLEDGED),
        ("acknowledged", AlarmState.OPEN),
        ("closed", AlarmState.OPEN),
        ("closed", AlarmState.ACKNOWLEDGED),
        ("closed", AlarmState.CLOSED),
    ]:
        with pytest.raises(Conflict):
            transition(current, target)


def test_acknowledge_then_close_records_who_and_why(court: Court, session_factory: SessionFactory) -> None:
    court.send(court.a, court.a.event(EventType.INTRUSION), at=T0)
    [alarm] = court.alarms()

    with session_scope(session_factory) as session:
        acknowledge_alarm(session, alarm_id=alarm.id, user_id=3, note="已联系执行干警")
    with session_scope(session_factory) as session:
        close_alarm(session, alarm_id=alarm.id, user_id=4, note="现场核实：债务人进入，已训诫")

    with session_factory() as session:
        done = get_alarm(session, alarm_id=alarm.id)
        assert (done.state, done.acknowledged_by, done.acknowledged_note) == ("closed", 3, "已联系执行干警")
        assert (done.closed_by, done.closed_note) == (4, "现场核实：债务人进入，已训诫")
        assert done.acknowledged_at is not None and done.closed_at is not None
        assert done.closed_at >= done.acknowledged_at


def test_illegal_transitions_raise_conflict_and_change_nothing(court: Court, session_factory: SessionFactory) -> None:
    court.send(court.a, court.a.event(EventType.TAMPER), at=T0)
    [alarm] = court.alarms()
    with session_scope(session_factory) as session:
        close_alarm(session, alarm_id=alarm.id, user_id=1, note="false alarm: cleaner")

    for action in (acknowledge_alarm, close_alarm):
        with pytest.raises(Conflict), session_scope(session_factory) as session:
            action(session, alarm_id=alarm.id, user_id=2, note="again")
    [alarm] = court.alarms()
    assert (alarm.state, alarm.closed_by, alarm.acknowledged_by) == ("closed", 1, None)
    with pytest.raises(NotFound), session_scope(session_factory) as session:
        acknowledge_alarm(session, alarm_id=alarm.id + 100, user_id=1, note="")


def test_closed_alarm_is_not_reopened_by_a_repeat(court: Court, session_factory: SessionFactory) -> None:
    court.send(court.a, court.a.event(EventType.INTRUSION), at=T0)
    [alarm] = court.alarms()
    with session_scope(session_factory) as session:
        close_alarm(session, alarm_id=alarm.id, user_id=1, note="seen")
    court.send(court.a, court.a.event(EventType.INTRUSION), at=T0 + timedelta(seconds=5))
    assert [(a.state, a.count) for a in court.alarms()] == [("closed", 1), ("open", 1)]


def test_list_alarms_filters_by_case_and_state_and_pages(court: Court, session_factory: SessionFactory) -> None:
    for i in range(3):
        court.send(court.a, court.a.event(EventType.INTRUSION), at=T0 + timedelta(hours=i))
    court.send(court.b, court.b.event(EventType.TAMPER), at=T0)
    a_ids = [a.id for a in court.alarms() if a.device_id == "seal-a"]

    with session_scope(session_factory) as session:
        close_alarm(session, alarm_id=a_ids[0], user_id=1, note="")
    with session_factory() as session:
        assert [a.id for a in list_alarms(session, case_nos={court.a.case_no}, state=None, limit=10, before=None)] == (
            a_ids[::-1]
        )
        page = list_alarms(session, case_nos={court.a.case_no}, state=None, limit=2, before=None)
        rest = list_alarms(session, case_nos={court.a.case_no}, state=None, limit=2, before=page[-1].id)
        assert [a.id for a in page + rest] == a_ids[::-1]
        assert [a.id for a in list_alarms(session, case_nos=None, state="closed", limit=10, before=None)] == [a_ids[0]]
        assert {a.device_id for a in list_alarms(session, case_nos=None, state="open", limit=10, before=None)} == {
            "seal-a",
            "seal-b",
        }
        assert list_alarms(session, case_nos=set(), state=None, limit=10, before=None) == []
        with pytest.raises(ValueError):
            list_alarms(session, case_nos=None, state="snoozed", limit=10, before=None)
        with pytest.raises(NotFound):
            get_alarm(session, alarm_id=10_000)
        assert count_live_by_kind(session) == {
            "intrusion": 2,
            "tamper": 1,
            "camera_blind": 0,
            "camera_lost": 0,
            "offline": 0,
            "missing_events": 0,
            "outbox_full": 0,
            "speaker_failed": 0,
            "event_lost": 0,
            "arm_failed": 0,
            "disarm_failed": 0,
            "snapshot_lost": 0,
            "clock_unsynced": 0,
            "case_mismatch": 0,
            "refusal_flood": 0,
            "sensor_flapping": 0,
            "sensor_stuck": 0,
            "storage_failed": 0,
        }
