"""Every alarm raised from a simulated seal's event (signed ``simulated: true``, docs/protocol.md) carries the mark in
its details, whatever its kind, so that the pages label it: before, only the alarms whose details copy the event's
payload did (intrusion, camera_lost), and a simulated seal's ``speaker_failed`` looked real."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from seal_protocol import EventType
from seal_protocol.envelope import SIMULATED_FIELD
from server.core.db import SessionFactory
from tests.server.ingest_world import make_court

T0 = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)
SIMULATED = {SIMULATED_FIELD: True}
FAILED = [{"language": "zh", "result": "failed"}]


def test_every_alarm_from_a_simulated_seal_s_event_says_so(session_factory: SessionFactory, tmp_path: Path) -> None:
    court = make_court(session_factory, tmp_path)
    a, b = court.a, court.b
    events = [
        # intrusion, and speaker_failed from its failed warning
        a.event(EventType.INTRUSION, {"armed": True, "warning": "failed", "warning_languages": FAILED, **SIMULATED}),
        a.event(EventType.CAMERA_LOST, {"reason": "read_failed", **SIMULATED}),
        a.event(EventType.HEARTBEAT, {"clock": {"synced": False, "max_error_ms": 16000}, **SIMULATED}),
    ]
    court.send(a, *events, at=T0)
    court.send(a, a.event(EventType.HEARTBEAT, {"speaker": "failed", **SIMULATED}), at=T0)  # no new occurrence
    # refused, in another case's name: case_mismatch
    court.send(a, a.event(EventType.INTRUSION, {"armed": True, **SIMULATED}, case_no=b.case_no), at=T0)
    alarms = court.alarms()
    kinds = {alarm.kind for alarm in alarms}
    assert {"intrusion", "speaker_failed", "camera_lost", "clock_unsynced", "case_mismatch"} <= kinds, kinds
    for alarm in alarms:
        assert alarm.details.get(SIMULATED_FIELD) is True, (alarm.kind, alarm.details)

    # A real seal's alarms carry no such mark (its events none), whatever its payload says otherwise.
    court.send(b, b.event(EventType.HEARTBEAT, {"speaker": "failed"}), at=T0 + timedelta(seconds=1))
    [real] = [alarm for alarm in court.alarms("speaker_failed") if alarm.device_id == b.device_id]
    assert SIMULATED_FIELD not in real.details
