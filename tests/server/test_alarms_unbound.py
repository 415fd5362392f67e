"""A condition alarm (offline, missing events, an unsynchronised clock, a blind camera, a stuck sensor, …) of a seal
that left the alarm's case — unbound (a lifting) or moved to another case — which the unbinding could not close: it
skips (``SKIP LOCKED``) an alarm another transaction holds, as the liveness check does each round for a silent
seal. The liveness check's next round closes it (server.ingest.liveness.close_unbound_conditions) and names the case
to the live pages; incidents (tamper, intrusion) stay for a person."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from sqlalchemy import Engine, select, text

from seal_protocol import EventType
from server.alarms.models import Alarm
from server.alarms.state import AlarmKind, AlarmState
from server.core.base import utc_now
from server.core.db import SessionFactory, session_scope
from server.ingest.liveness import LivenessChecker
from server.seals.registry import bind_seal, unbind_seal
from tests.server.helpers import CASE_A, CASE_B
from tests.server.ingest_world import Court, make_court


def _offline_in_a(session_factory: SessionFactory, tmp_path: Path) -> tuple[Court, LivenessChecker, list]:
    """Seal a heard once, then silent an hour: an ``offline`` alarm in case A. The checker reports what it closes."""
    court = make_court(session_factory, tmp_path)
    court.send(court.a, court.a.event(EventType.HEARTBEAT, {"armed": True}))
    told: list[list[tuple[str, str]]] = []
    checker = LivenessChecker(session_factory, offline_after_s=60, interval_s=15, on_closed=told.append)
    assert checker.check(utc_now() + timedelta(hours=1)) == ["seal-a"]
    return court, checker, told


def _add(session_factory: SessionFactory, kind: AlarmKind, case_no: str = CASE_A) -> None:
    at = utc_now()
    with session_scope(session_factory) as session:
        session.add(
            Alarm(
                case_no=case_no,
                device_id="seal-a",
                kind=kind.value,
                severity=kind.severity.value,
                state=AlarmState.OPEN.value,
                opened_at=at,
                last_seen_at=at,
                count=1,
                details={},
            )
        )


def _rows(session_factory: SessionFactory) -> list[tuple[str, str, str, int | None, str | None]]:
    with session_factory() as session:
        alarms = session.scalars(select(Alarm).where(Alarm.device_id == "seal-a").order_by(Alarm.id))
        return [(a.case_no, a.kind, a.state, a.closed_by, a.closed_note) for a in alarms]


def test_conditions_of_an_unbound_seal_the_unbinding_skipped_are_closed(
    session_factory: SessionFactory, tmp_path: Path
) -> None:
    """What a skipped close leaves (or a server before this fix left in its database): the unbound seal's condition
    alarms open in its old case. Written as rows, since on SQLite no transaction can hold them while the unbinding
    runs (the next test holds one for real, on PostgreSQL)."""
    court, checker, told = _offline_in_a(session_factory, tmp_path)
    with session_scope(session_factory) as session:  # the lifting removes the seal (and closes its offline alarm)
        unbind_seal(session, actor=None, device_id="seal-a")
    kinds = (AlarmKind.OFFLINE, AlarmKind.CLOCK_UNSYNCED, AlarmKind.MISSING_EVENTS, AlarmKind.SPEAKER_FAILED)
    kinds += (AlarmKind.CAMERA_BLIND, AlarmKind.CAMERA_LOST, AlarmKind.SENSOR_FLAPPING, AlarmKind.SENSOR_STUCK)
    for kind in (*kinds, AlarmKind.TAMPER):
        _add(session_factory, kind)
    assert checker.check(utc_now() + timedelta(hours=2)) == []
    rows = _rows(session_factory)
    print("alarms:", rows, "told:", told)
    live = [(kind, state) for _, kind, state, _, _ in rows if state != "closed"]
    assert live == [("tamper", "open")], "a case keeps live conditions of a seal it no longer has (or lost an incident)"
    for _, kind, _, closed_by, note in rows[1:]:  # the first: the offline alarm the unbinding itself closed
        if kind != "tamper":
            assert closed_by is None and note is not None and note.startswith("system: 封条已不再绑定于本案")
            assert "no longer bound to the case" in note
    assert told == [[("seal-a", CASE_A)]], "the case's pages are told, by case: the seal is not shown there any more"
    assert checker.check(utc_now() + timedelta(hours=3)) == [] and len(told) == 1  # nothing more to close


def test_conditions_of_a_seal_moved_away_stay_with_the_new_case_only(
    session_factory: SessionFactory, tmp_path: Path
) -> None:
    court, checker, told = _offline_in_a(session_factory, tmp_path)
    with session_scope(session_factory) as session:  # the officer takes it to case B's site
        unbind_seal(session, actor=None, device_id="seal-a")
        bind_seal(session, actor=None, device_id="seal-a", case_no=CASE_B)
    _add(session_factory, AlarmKind.OFFLINE)  # left open in case A (as the skipped close leaves them)
    _add(session_factory, AlarmKind.CLOCK_UNSYNCED)
    _add(session_factory, AlarmKind.CLOCK_UNSYNCED, CASE_B)  # its clock is still off, now in case B
    assert checker.check(utc_now() + timedelta(hours=2)) == ["seal-a"]  # silent in case B too
    rows = [(case_no, kind, state) for case_no, kind, state, _, _ in _rows(session_factory)]
    print("alarms:", rows, "told:", told)
    assert sorted(r for r in rows if r[2] != "closed") == [
        (CASE_B, "clock_unsynced", "open"),
        (CASE_B, "offline", "open"),
    ]
    assert sorted(r for r in rows if r[2] == "closed") == [
        (CASE_A, "clock_unsynced", "closed"),
        (CASE_A, "offline", "closed"),  # closed by the unbinding
        (CASE_A, "offline", "closed"),  # left open, closed by the liveness round
    ]
    assert told == [[("seal-a", CASE_A)]]


def test_an_alarm_held_while_the_seal_is_unbound_is_closed_next_round(
    pg_engine: Engine, session_factory: SessionFactory, tmp_path: Path
) -> None:
    """PostgreSQL, for real: a liveness round holds the seal's offline alarm while the lifting unbinds it."""
    court, checker, told = _offline_in_a(session_factory, tmp_path)
    with pg_engine.connect() as holder:
        holder.execute(text("SELECT id FROM alarms WHERE device_id = 'seal-a' AND state <> 'closed' FOR UPDATE"))
        with session_scope(session_factory) as session:
            unbind_seal(session, actor=None, device_id="seal-a")
        holder.rollback()
    assert [state for _, _, state, _, _ in _rows(session_factory)] == ["open"]  # skipped by the unbinding
    checker.check(utc_now() + timedelta(hours=2))
    rows = _rows(session_factory)
    print("alarms:", rows)
    assert [(case_no, kind, state) for case_no, kind, state, _, _ in rows] == [(CASE_A, "offline", "closed")]
    assert told == [[("seal-a", CASE_A)]]
