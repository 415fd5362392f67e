"""A seal whose clock is not synchronised says so in its signed heartbeats, and the court raises ``clock_unsynced``:
the times it signs may be wrong, which whoever reads its events as evidence must know."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from seal_protocol import EventType
from server.core.db import SessionFactory
from tests.server.ingest_world import Court, make_court

T0 = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)
UNSYNCED = {"clock": {"synced": False, "max_error_ms": 16000}}
SYNCED = {"clock": {"synced": True, "max_error_ms": 12}}
UNKNOWN = {"clock": {"synced": None, "max_error_ms": None}}


@pytest.fixture
def court(session_factory: SessionFactory, tmp_path: Path) -> Court:
    return make_court(session_factory, tmp_path)


def _states(court: Court) -> list[tuple[str, str, int]]:
    return [(a.severity, a.state, a.count) for a in court.alarms("clock_unsynced")]


def test_an_unsynchronised_heartbeat_raises_it_once_and_a_synchronised_one_closes_it(court: Court) -> None:
    court.send(court.a, court.a.event(EventType.HEARTBEAT, UNSYNCED), at=T0)
    [alarm] = court.alarms("clock_unsynced")
    assert (alarm.severity, alarm.state, alarm.case_no) == ("medium", "open", court.a.case_no)
    assert alarm.details["clock"] == UNSYNCED["clock"] and alarm.details["seq"] == 1
    court.send(court.a, court.a.event(EventType.HEARTBEAT, UNSYNCED), at=T0 + timedelta(minutes=1))
    assert _states(court) == [("medium", "open", 1)]  # still the same condition, not a new occurrence
    court.send(court.a, court.a.event(EventType.HEARTBEAT, SYNCED), at=T0 + timedelta(minutes=2))
    assert _states(court) == [("medium", "closed", 1)]
    court.send(court.b, court.b.event(EventType.HEARTBEAT, SYNCED), at=T0)
    assert [a.device_id for a in court.alarms("clock_unsynced")] == ["seal-a"]


@pytest.mark.parametrize(
    ("event_type", "payload"),
    [
        (EventType.AGENT_STARTED, UNSYNCED),  # a Pi without a real-time clock starts so, until NTP answers
        (EventType.HEARTBEAT, UNKNOWN),  # the seal could not ask its kernel: no guess either way
        (EventType.HEARTBEAT, {}),
        (EventType.HEARTBEAT, {"clock": "unsynced"}),
    ],
)
def test_what_does_not_say_a_running_clock_is_unsynchronised_raises_nothing(
    court: Court, event_type: EventType, payload: dict[str, Any]
) -> None:
    court.send(court.a, court.a.event(event_type, payload), at=T0)
    assert court.alarms("clock_unsynced") == []


@pytest.mark.parametrize(
    ("event_type", "payload"),
    [(EventType.CLOCK_STEPPED, {"step_ms": 86_400_000, "synced": True}), (EventType.AGENT_STARTED, SYNCED)],
)
def test_a_step_or_a_start_on_a_synchronised_clock_closes_it(
    court: Court, event_type: EventType, payload: dict[str, Any]
) -> None:
    court.send(court.a, court.a.event(EventType.HEARTBEAT, UNSYNCED), at=T0)
    court.send(court.a, court.a.event(event_type, payload), at=T0 + timedelta(minutes=1))
    assert _states(court) == [("medium", "closed", 1)]
