"""Questions answered from the stored events."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, or_, select
from sqlalchemy.orm import Session

from seal_protocol import EventType
from server.evidence.models import Event, Snapshot, SnapshotName

#: Events that tell whether the seal was armed (``armed``/``disarmed`` by their type, the others by ``payload.armed``).
_ARMED_STATE_EVENTS = (EventType.ARMED, EventType.DISARMED, EventType.HEARTBEAT, EventType.AGENT_STARTED)


def last_known_armed(session: Session, *, device_id: str) -> bool | None:
    """Whether the seal's latest event that tells was armed; ``None`` if none does. Unbinding an armed seal is worth
    a second look (it should have been disarmed after an approved removal), so the unbinding's audit entry says."""
    row = session.execute(
        select(Event.type, Event.payload)
        .where(Event.device_id == device_id, Event.type.in_([t.value for t in _ARMED_STATE_EVENTS]))
        .order_by(Event.seq.desc())
        .limit(1)
    ).first()
    return None if row is None else armed_state(row.type, row.payload)


#: A span of the court's clock, its end ``None`` while it lasts.
Span = tuple[datetime, datetime | None]


def armed_in_case(
    session: Session, *, device_id: str, case_no: str, spans: Sequence[Span] | None, until: datetime | None
) -> tuple[bool, int] | None:
    """Whether the seal's latest event that tells, stored in ``case_no``, received within one of ``spans`` (its
    bindings to that case; ``None``: any time) and by ``until`` (``None``: whatever is stored), said it was armed,
    with that event's seq; ``None`` if none did. What another case's events say of the seal is not this case's
    business."""
    if spans is not None and not spans:
        return None
    query = (
        select(Event.type, Event.payload, Event.seq)
        .where(
            Event.device_id == device_id,
            Event.case_no == case_no,
            Event.type.in_([t.value for t in _ARMED_STATE_EVENTS]),
        )
        .order_by(Event.seq.desc())
    )
    if until is not None:
        query = query.where(Event.received_at <= until)
    if spans is not None:
        within = [_within(start, end or until) for start, end in spans]
        query = query.where(or_(*within))
    result = session.execute(query.execution_options(yield_per=64))  # newest first: mostly the first row tells
    try:
        for event_type, payload, seq in result:
            armed = armed_state(event_type, payload)
            if armed is not None:
                return armed, seq
        return None
    finally:
        result.close()


def _within(start: datetime, end: datetime | None) -> ColumnElement[bool]:
    if end is None:
        return Event.received_at >= start
    return and_(Event.received_at >= start, Event.received_at <= end)


def armed_state(event_type: str, payload: dict[str, object]) -> bool | None:
    """Whether an event of ``event_type`` with ``payload`` says the seal is armed; ``None`` if it does not tell."""
    if event_type in (EventType.ARMED, EventType.DISARMED):
        return bool(event_type == EventType.ARMED)
    if event_type not in _ARMED_STATE_EVENTS:
        return None
    armed = payload.get("armed")
    return armed if isinstance(armed, bool) else None


#: Whether a stored signed event of a ``snapshots`` row's case from its seal names the row's picture (the unique index
#: of the names: (sha256, device_id, case_no)); a picture none names is unsigned, filed provisionally.
PICTURE_NAMED = (
    select(SnapshotName.id)
    .where(
        SnapshotName.sha256 == Snapshot.sha256,
        SnapshotName.device_id == Snapshot.device_id,
        SnapshotName.case_no == Snapshot.case_no,
    )
    .exists()
)


def named_pictures(payload: Mapping[str, Any]) -> list[str]:
    """The SHA-256s of the pictures an event's payload names (its ``snapshots`` list, and its ``snapshot``)."""
    found = payload.get("snapshots")
    names = [s for s in found if isinstance(s, str)] if isinstance(found, list) else []
    single = payload.get("snapshot")
    if isinstance(single, str):
        names.append(single)
    return names
