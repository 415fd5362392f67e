"""A seal's flapping or stuck sensor: the court stores its signed events and raises an alarm (high) that its summaries
fold into and the seal's word that the sensor is normal again closes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from seal_protocol import EventType
from server.core.db import SessionFactory
from server.evidence.models import Event
from tests.server.ingest_world import Court, make_court

T0 = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)
TS = "2026-11-26T08:00:00.000Z"
BEGAN = {"sensor": "pir", "phase": "began", "edges": 40, "window_s": 300, "triggers_allowed": 5, "refill_s": 60}
SUMMARY = {"sensor": "pir", "phase": "continuing", "merged": True, "edges": 6000}
SUMMARY |= {"first_edge": TS, "last_edge": TS, "since": TS}
NORMAL = {"sensor": "pir", "edges": 0, "first_edge": None, "last_edge": None, "since": TS}
NORMAL |= {"merged_edges": 6001, "quiet_s": 30}


@pytest.fixture
def court(session_factory: SessionFactory, tmp_path: Path) -> Court:
    return make_court(session_factory, tmp_path, fold_window_s=60)


def stored_types(court: Court) -> list[str]:
    with court.session_factory() as session:
        return list(session.scalars(select(Event.type).where(Event.device_id == "seal-a").order_by(Event.seq)))


def test_a_flapping_sensor_is_stored_raises_one_alarm_its_summaries_fold_into_and_normal_closes_it(
    court: Court,
) -> None:
    court.send(court.a, court.a.event(), at=T0)
    court.send(court.a, court.a.event(EventType.SENSOR_FLAPPING, BEGAN), at=T0)
    court.send(court.a, court.a.event(EventType.SENSOR_FLAPPING, SUMMARY), at=T0 + timedelta(seconds=30))
    [alarm] = court.alarms()
    assert (alarm.kind, alarm.severity, alarm.state, alarm.count) == ("sensor_flapping", "high", "open", 2)
    assert alarm.details["sensor"] == "pir" and alarm.details["event_type"] == "sensor_flapping"
    court.send(court.a, court.a.event(EventType.SENSOR_NORMAL, NORMAL), at=T0 + timedelta(seconds=60))
    [alarm] = court.alarms()
    assert (alarm.state, alarm.closed_note) == ("closed", "system: sensor_normal (seq 4)")
    assert stored_types(court)[1:] == ["sensor_flapping", "sensor_flapping", "sensor_normal"]


def test_a_stuck_pir_is_stored_raises_its_alarm_and_unstuck_closes_it(court: Court) -> None:
    court.send(court.a, court.a.event(), at=T0)
    stuck = {"sensor": "pir", "since": TS, "after_ms": 600_000}
    court.send(court.a, court.a.event(EventType.SENSOR_STUCK, stuck), at=T0)
    [alarm] = court.alarms()
    assert (alarm.kind, alarm.severity, alarm.state) == ("sensor_stuck", "high", "open")
    court.send(court.a, court.a.event(EventType.SENSOR_UNSTUCK, {"sensor": "pir", "since": TS}), at=T0)
    assert court.alarms()[0].state == "closed"
    assert stored_types(court)[1:] == ["sensor_stuck", "sensor_unstuck"]
