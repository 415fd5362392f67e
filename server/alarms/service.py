"""Alarms for people: list, get, acknowledge, close; webhook targets of a case. Keyword-only, on a session.

The caller owns the transaction (commit or roll back). Acknowledging and closing lock the alarm's row, so that a
person and the ingest (which folds repeats into it, or closes it on a recovery) never overwrite each other.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from server.alarms.models import Alarm
from server.alarms.state import CONDITIONS, LIVE_STATES, AlarmKind, AlarmState, transition
from server.audit.service import Actor, record_audit
from server.core.base import utc_now
from server.errors import NotFound

NOTE_MAX = 2000


def list_alarms(
    session: Session, *, case_nos: set[str] | None, state: str | None, limit: int, before: int | None
) -> list[Alarm]:
    """Alarms newest first; only of ``case_nos`` (``None``: every case) and in ``state`` (``None``: any).

    ``before`` is a paging cursor: only alarms with a smaller id. Raise ``ValueError`` for an unknown state.
    """
    if limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}")
    query = select(Alarm)
    if case_nos is not None:
        if not case_nos:
            return []
        query = query.where(Alarm.case_no.in_(case_nos))
    if state is not None:
        query = query.where(Alarm.state == AlarmState(state).value)
    if before is not None:
        query = query.where(Alarm.id < before)
    return list(session.scalars(query.order_by(Alarm.id.desc()).limit(limit)))


def get_alarm(session: Session, *, alarm_id: int) -> Alarm:
    alarm = session.get(Alarm, alarm_id)
    if alarm is None:
        raise NotFound(f"unknown alarm {alarm_id}")
    return alarm


def acknowledge_alarm(session: Session, *, alarm_id: int, user_id: int, note: str) -> Alarm:
    """A person has seen the alarm and takes care of it; raise ``Conflict`` unless it is open."""
    alarm = _locked(session, alarm_id)
    alarm.state = transition(alarm.state, AlarmState.ACKNOWLEDGED).value
    alarm.acknowledged_by = user_id
    alarm.acknowledged_at = utc_now()
    alarm.acknowledged_note = _checked_note(note)
    session.flush()
    return alarm


def close_alarm(session: Session, *, alarm_id: int, user_id: int, note: str) -> Alarm:
    """A person closes the alarm (dealt with, or false); raise ``Conflict`` if it is closed already."""
    alarm = _locked(session, alarm_id)
    alarm.state = transition(alarm.state, AlarmState.CLOSED).value
    alarm.closed_by = user_id
    alarm.closed_at = utc_now()
    alarm.closed_note = _checked_note(note)
    session.flush()
    return alarm


def acknowledge_as(session: Session, *, actor: Actor, alarm_id: int, note: str) -> Alarm:
    """A person acknowledges the alarm (the API and the pages alike): :func:`acknowledge_alarm`, audited. The caller
    has checked that ``actor`` may (:mod:`server.auth.access`) and commits."""
    alarm = acknowledge_alarm(session, alarm_id=alarm_id, user_id=actor.id, note=note)
    details = {"case_no": alarm.case_no, "note": note}
    record_audit(session, actor=actor, action="alarm.ack", target=str(alarm_id), case_no=alarm.case_no, details=details)
    return alarm


def close_as(session: Session, *, actor: Actor, alarm_id: int, note: str) -> Alarm:
    """A person closes the alarm: :func:`close_alarm`, audited; the caller has checked access and commits."""
    alarm = close_alarm(session, alarm_id=alarm_id, user_id=actor.id, note=note)
    details = {"case_no": alarm.case_no, "note": note}
    record_audit(
        session, actor=actor, action="alarm.close", target=str(alarm_id), case_no=alarm.case_no, details=details
    )
    return alarm


def count_live_by_kind(session: Session) -> dict[str, int]:
    """Open and acknowledged alarms per kind, every kind listed (0 if none)."""
    counts = dict.fromkeys((kind.value for kind in AlarmKind), 0)
    query = select(Alarm.kind, func.count(Alarm.id)).where(Alarm.state.in_(LIVE_STATES)).group_by(Alarm.kind)
    for kind, count in session.execute(query):
        counts[kind] = int(count)
    return counts


def _locked(session: Session, alarm_id: int) -> Alarm:
    query = select(Alarm).where(Alarm.id == alarm_id).with_for_update().execution_options(populate_existing=True)
    alarm = session.scalar(query)
    if alarm is None:
        raise NotFound(f"unknown alarm {alarm_id}")
    return alarm


def _checked_note(note: str) -> str:
    if len(note) > NOTE_MAX:
        raise ValueError(f"a note has at most {NOTE_MAX} characters, got {len(note)}")
    return note


def close_left_conditions(session: Session, *, device_id: str, case_no: str, at: datetime) -> list[Alarm]:
    """Close, on behalf of the system, the live condition alarms (offline, missing events, …) the seal has in
    ``case_no``, which it has just left (an unbinding, a move; in its transaction): a condition of a seal the case no
    longer has is not the case's to follow, and the seal's next one in its new case is raised there. Return them.

    Called with the seal's row locked, after the ingest's place for alarms in the lock order (server.ingest.rows):
    an alarm is locked without waiting (``SKIP LOCKED``), never waited for; one held by another transaction is left
    live (the liveness check or the ingest holding it folds or closes it)."""
    kinds = sorted(kind.value for kind in CONDITIONS)
    query = (
        select(Alarm)
        .where(
            Alarm.device_id == device_id,
            Alarm.case_no == case_no,
            Alarm.kind.in_(kinds),
            Alarm.state.in_(LIVE_STATES),
        )
        .order_by(Alarm.id)
        .with_for_update(skip_locked=True)
        .execution_options(populate_existing=True)
    )
    closing = list(session.scalars(query))
    for alarm in closing:
        alarm.state = transition(alarm.state, AlarmState.CLOSED).value
        alarm.closed_at, alarm.closed_by = at, None
        alarm.closed_note = "system: the seal is no longer bound to the case"
    return closing
