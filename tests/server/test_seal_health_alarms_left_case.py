"""The seal's own health alarms — ``camera_blind``, ``camera_lost``, ``sensor_flapping``, ``sensor_stuck`` — once the
seal leaves the case (moved, unbound, lifted). They are conditions (server.alarms.state.CONDITIONS): the leaving closes
them in the case it left, like an offline alarm, and a recovery closes the seal's live one in whatever case it stands.
Before, they were left out: case A's judge was told for ever that a seal the case no longer has was blind. Incidents
(intrusion, tamper) stay for a person."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from seal_protocol import EventType
from server.alarms.models import Alarm
from server.alarms.state import AlarmKind, AlarmState
from server.core.db import SessionFactory, session_scope
from server.seals.registry import bind_seal, unbind_seal
from tests.server.helpers import CASE_A, SimulatedSeal
from tests.server.ingest_world import Court, make_court

T0 = datetime.now(UTC).replace(microsecond=0)
TS = "2026-11-26T08:00:00.000Z"
HEALTH = [
    (EventType.CAMERA_BLIND, {"reason": "uniform", "after_ms": 30_000}),
    (EventType.CAMERA_LOST, {"reason": "read_failed", "after_ms": 5_000}),
    (EventType.SENSOR_FLAPPING, {"sensor": "pir", "phase": "began", "edges": 40, "window_s": 300}),
    (EventType.SENSOR_STUCK, {"sensor": "pir", "since": TS, "after_ms": 600_000}),
]
LEFT_NOTE = "system: the seal is no longer bound to the case"


@pytest.fixture
def court(session_factory: SessionFactory, tmp_path: Path) -> Court:
    return make_court(session_factory, tmp_path, fold_window_s=60)


def _unhealthy_and_broken_into(court: Court) -> None:
    """Seal a, in case A: its camera blind and lost, its PIR flapping and stuck, and an intrusion."""
    a = court.a
    court.send(a, a.event(), at=T0)
    court.send(a, *(a.event(kind, payload) for kind, payload in HEALTH), at=T0)
    court.send(a, a.event(EventType.INTRUSION, {"armed": True, "warning": "played"}), at=T0)


def _move(court: Court, seal: SimulatedSeal, case_no: str | None) -> None:
    with session_scope(court.session_factory) as session:
        unbind_seal(session, actor=None, device_id=seal.device_id)
        if case_no is not None:
            bind_seal(session, actor=None, device_id=seal.device_id, case_no=case_no)
    seal.case_no = case_no or seal.case_no


def _rows(court: Court) -> list[tuple[str, str, str | None]]:
    return [(a.kind, a.state, a.closed_note) for a in court.alarms()]


@pytest.mark.parametrize("to_case_b", [True, False], ids=["moved", "unbound"])
def test_leaving_a_case_closes_the_seal_s_camera_and_sensor_alarms_there(court: Court, to_case_b: bool) -> None:
    _unhealthy_and_broken_into(court)
    assert {kind for kind, state, _ in _rows(court) if state == "open"} == {
        "camera_blind", "camera_lost", "sensor_flapping", "sensor_stuck", "intrusion",
    }  # fmt: skip
    _move(court, court.a, court.b.case_no if to_case_b else None)
    rows = _rows(court)
    print("alarms:", rows)
    assert [kind for kind, state, _ in rows if state != "closed"] == ["intrusion"], "case A keeps a lost seal's health"
    assert {note for _, state, note in rows if state == "closed"} == {LEFT_NOTE}


def test_a_recovery_closes_the_seal_s_live_alarm_in_whatever_case_it_stands(court: Court) -> None:
    """A camera_blind alarm the move skipped (another transaction held it, ``SKIP LOCKED``) is live in case A; the
    seal, now in case B, says its camera recovered: that closes it, in case A."""
    a = court.a
    court.send(a, a.event(), at=T0)
    court.send(a, a.event(*HEALTH[0]), at=T0)
    _move(court, a, court.b.case_no)
    with session_scope(court.session_factory) as session:  # as the skipped close leaves it: live in case A
        session.add(_live(AlarmKind.CAMERA_BLIND, court.a.device_id, CASE_A))
    court.send(a, a.event(EventType.CAMERA_RECOVERED, {"down_ms": 40_000}), at=T0 + timedelta(seconds=5))
    rows = [(x.case_no, x.kind, x.state, x.closed_note) for x in court.alarms()]
    print("alarms:", rows)
    assert rows[-1] == (CASE_A, "camera_blind", "closed", "system: camera_recovered (seq 3)")
    assert all(state == "closed" for _, _, state, _ in rows)


def test_a_flapping_sensor_s_summary_long_after_the_last_folds_into_the_live_alarm(court: Court) -> None:
    """A summary comes at most every ``summary_s``, only if edges came: an hour may pass between two, far past the
    fold window; each folds into the one live alarm (it opened a second one, paging again)."""
    a = court.a
    court.send(a, a.event(), at=T0)
    court.send(a, a.event(*HEALTH[2]), at=T0)
    summary = {"sensor": "pir", "phase": "continuing", "merged": True, "edges": 12}
    summary |= {"first_edge": TS, "last_edge": TS, "since": TS}
    court.send(a, a.event(EventType.SENSOR_FLAPPING, summary), at=T0 + timedelta(hours=1))
    alarms = court.alarms("sensor_flapping")
    print("alarms:", [(x.state, x.count) for x in alarms])
    assert [(x.state, x.count) for x in alarms] == [("open", 2)]


def _live(kind: AlarmKind, device_id: str, case_no: str) -> Alarm:
    return Alarm(
        case_no=case_no,
        device_id=device_id,
        kind=kind.value,
        severity=kind.severity.value,
        state=AlarmState.OPEN.value,
        opened_at=T0,
        last_seen_at=T0,
        count=1,
        details={},
    )
