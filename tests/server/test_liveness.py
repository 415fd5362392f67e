"""Liveness: silent seals get an ``offline`` alarm; an ``online`` status or a new event closes it."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from seal_protocol import encode_status
from seal_protocol.status import SealStatus
from server.core.base import utc_now
from server.core.db import SessionFactory
from server.core.metrics import IngestMetrics
from server.ingest.liveness import LivenessChecker, Sighting, find_silent_seals
from server.ingest.results import Message
from tests.server.ingest_world import Court, make_court

T0 = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)
OFFLINE_AFTER_S = 180


def test_find_silent_seals() -> None:
    sightings = [
        Sighting("silent", "case-1", T0 - timedelta(seconds=181)),
        Sighting("just-in-time", "case-1", T0 - timedelta(seconds=180)),
        Sighting("recent", "case-1", T0 - timedelta(seconds=5)),
        Sighting("never-heard", "case-1", None),
        Sighting("unbound", None, T0 - timedelta(days=3)),
        Sighting("already-alarmed", "case-2", T0 - timedelta(hours=1)),
    ]
    silent = find_silent_seals(T0, sightings, offline_after_s=OFFLINE_AFTER_S, alarmed={"already-alarmed"})
    assert [s.device_id for s in silent] == ["silent"]
    assert [s.device_id for s in find_silent_seals(T0, sightings, offline_after_s=3000)] == ["already-alarmed"]


@pytest.fixture
def court(session_factory: SessionFactory, tmp_path: Path) -> Court:
    return make_court(session_factory, tmp_path)


def _status(court: Court, state: SealStatus, at: datetime) -> None:
    court.ingestor.ingest([Message(court.a.status_topic, encode_status(state), at)])


def _checker(
    court: Court, *, metrics: IngestMetrics | None = None, clock: Callable[[], datetime] = utc_now
) -> LivenessChecker:
    return LivenessChecker(
        court.session_factory, offline_after_s=OFFLINE_AFTER_S, interval_s=0.05, metrics=metrics, clock=clock
    )


def test_silence_opens_offline_once(court: Court) -> None:
    court.send(court.a, court.a.event(), at=T0)
    court.send(court.b, court.b.event(), at=T0 + timedelta(seconds=100))
    checker = _checker(court)

    assert checker.check(T0 + timedelta(seconds=OFFLINE_AFTER_S)) == []
    assert checker.check(T0 + timedelta(seconds=OFFLINE_AFTER_S + 1)) == ["seal-a"]
    [alarm] = court.alarms()
    assert (alarm.kind, alarm.device_id, alarm.case_no, alarm.state) == ("offline", "seal-a", court.a.case_no, "open")
    assert alarm.details == {"reason": "silent", "last_seen_at": T0.isoformat(), "silent_s": OFFLINE_AFTER_S + 1}
    assert checker.check(T0 + timedelta(seconds=OFFLINE_AFTER_S + 60)) == []  # still silent: no second alarm
    assert [(a.count, a.state) for a in court.alarms()] == [(1, "open")]
    assert checker.check(T0 + timedelta(seconds=500)) == ["seal-b"]


def test_unsigned_messages_are_no_sign_of_life(court: Court) -> None:
    """Anyone with the seal's MQTT password can publish an "online" status, a picture or an old event again: none
    of them keeps a silent seal from its offline alarm, nor closes it."""
    old = court.a.event()
    court.send(court.a, old, at=T0)
    checker = _checker(court)
    _status(court, SealStatus.ONLINE, T0 + timedelta(seconds=OFFLINE_AFTER_S - 10))
    court.send(court.a, old, at=T0 + timedelta(seconds=OFFLINE_AFTER_S - 5))  # a replayed copy

    assert checker.check(T0 + timedelta(seconds=OFFLINE_AFTER_S + 1)) == ["seal-a"]
    _status(court, SealStatus.ONLINE, T0 + timedelta(seconds=OFFLINE_AFTER_S + 2))
    [alarm] = court.alarms()
    assert alarm.state == "open"


def test_event_after_silence_closes_offline_and_silence_again_opens_a_new_one(court: Court) -> None:
    court.send(court.a, court.a.event(), at=T0)
    checker = _checker(court)
    assert checker.check(T0 + timedelta(seconds=200)) == ["seal-a"]

    court.send(court.a, court.a.event(), at=T0 + timedelta(seconds=300))
    assert court.alarms()[0].closed_note == "system: event seq 2 received"
    assert checker.check(T0 + timedelta(seconds=400)) == []
    assert checker.check(T0 + timedelta(seconds=600)) == ["seal-a"]
    assert [a.state for a in court.alarms()] == ["closed", "open"]


def test_last_will_alarm_is_not_doubled_by_the_silence_check(court: Court) -> None:
    court.send(court.a, court.a.event(), at=T0)
    _status(court, SealStatus.OFFLINE, T0 + timedelta(seconds=10))  # the broker publishes the seal's Last Will

    assert _checker(court).check(T0 + timedelta(hours=1)) == []
    [alarm] = court.alarms()
    assert alarm.details["reason"] == "offline_status" and alarm.count == 1


def test_checker_thread_uses_its_clock_and_updates_the_gauge(court: Court) -> None:
    court.send(court.a, court.a.event(), at=datetime.now(UTC))
    metrics = IngestMetrics()
    later = datetime.now(UTC) + timedelta(hours=1)
    checker = _checker(court, metrics=metrics, clock=lambda: later)
    checker.start()
    try:
        assert metrics.wait_until(lambda m: m.alarms_live.get("offline") == 1, 10.0), metrics.snapshot()
    finally:
        checker.stop()
    [alarm] = court.alarms()
    assert alarm.opened_at == later
    assert metrics.snapshot().alarms_live["intrusion"] == 0
