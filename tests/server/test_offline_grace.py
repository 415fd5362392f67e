"""Calm by design: a seal that says it is offline (its Last Will, or a clean shutdown) gets its offline alarm only if
it is not back within ``[alarms] offline_grace_s``; a seal that restarts cleanly pages nobody."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from seal_protocol import EventType, encode_status
from seal_protocol.status import SealStatus
from server.core.db import SessionFactory
from server.ingest.liveness import LivenessChecker, Sighting, find_gone_seals
from server.ingest.results import Message
from tests.server.ingest_world import Court, make_court

T0 = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)
GRACE_S = 60


def test_find_gone_seals() -> None:
    said_offline = T0 - timedelta(seconds=61)
    sightings = [
        Sighting("gone", "case-1", T0 - timedelta(hours=1), "offline", said_offline),
        Sighting("never-heard", "case-1", None, "offline", said_offline),
        Sighting("within-grace", "case-1", T0 - timedelta(hours=1), "offline", T0 - timedelta(seconds=30)),
        Sighting("back", "case-1", said_offline + timedelta(seconds=5), "offline", said_offline),
        Sighting("online", "case-1", T0 - timedelta(hours=1), "online", said_offline),
        Sighting("unbound", None, T0 - timedelta(hours=1), "offline", said_offline),
        Sighting("alarmed", "case-2", T0 - timedelta(hours=1), "offline", said_offline),
    ]
    gone = find_gone_seals(T0, sightings, grace_s=GRACE_S, alarmed={"alarmed"})
    assert [s.device_id for s in gone] == ["gone", "never-heard"]


@pytest.fixture
def court(session_factory: SessionFactory, tmp_path: Path) -> Court:
    return make_court(session_factory, tmp_path, offline_grace_s=GRACE_S)


def _status(court: Court, state: SealStatus, at: datetime) -> None:
    court.ingestor.ingest([Message(court.a.status_topic, encode_status(state), at)])


def _checker(court: Court) -> LivenessChecker:
    return LivenessChecker(court.session_factory, offline_after_s=180, interval_s=1, offline_grace_s=GRACE_S)


def test_an_offline_status_pages_only_after_the_grace(court: Court) -> None:
    raised: list[list[str]] = []
    court.send(court.a, court.a.event(), at=T0)
    _status(court, SealStatus.OFFLINE, T0 + timedelta(seconds=10))
    assert court.alarms() == []  # not at once

    checker = _checker(court)
    checker._on_raised = raised.append
    assert checker.check(T0 + timedelta(seconds=10 + GRACE_S - 1)) == []
    assert checker.check(T0 + timedelta(seconds=10 + GRACE_S + 1)) == ["seal-a"]
    [alarm] = court.alarms()
    assert (alarm.kind, alarm.state, alarm.details["reason"]) == ("offline", "open", "offline_status")
    assert alarm.details["offline_since"] == (T0 + timedelta(seconds=10)).isoformat()
    assert checker.check(T0 + timedelta(seconds=10 + 2 * GRACE_S)) == []  # once
    assert raised == [["seal-a"]]


def test_a_seal_that_restarts_within_the_grace_pages_nobody(court: Court) -> None:
    court.send(court.a, court.a.event(), at=T0)
    _status(court, SealStatus.OFFLINE, T0 + timedelta(seconds=10))  # its goodbye, or its Last Will
    _status(court, SealStatus.ONLINE, T0 + timedelta(seconds=14))
    court.send(court.a, court.a.event(EventType.AGENT_STARTED), at=T0 + timedelta(seconds=15))
    checker = _checker(court)
    for seconds in (30, 80, 150):
        assert checker.check(T0 + timedelta(seconds=seconds)) == []
    assert court.alarms() == []


def test_a_signed_event_after_the_offline_status_counts_as_back(court: Court) -> None:
    court.send(court.a, court.a.event(), at=T0)
    _status(court, SealStatus.OFFLINE, T0 + timedelta(seconds=10))
    court.send(court.a, court.a.event(), at=T0 + timedelta(seconds=20))  # no online status (yet), but it speaks
    assert _checker(court).check(T0 + timedelta(seconds=100)) == []
    assert court.alarms() == []


def test_without_a_grace_the_offline_status_pages_at_once(session_factory: SessionFactory, tmp_path: Path) -> None:
    court = make_court(session_factory, tmp_path, offline_grace_s=0)
    _status(court, SealStatus.OFFLINE, T0)
    [alarm] = court.alarms()
    assert alarm.details["reason"] == "offline_status"
