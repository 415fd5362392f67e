"""Questions answered from the stored events."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from seal_protocol import EventType
from server.evidence.models import Event

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


def armed_state(event_type: str, payload: dict[str, object]) -> bool | None:
    """Whether an event of ``event_type`` with ``payload`` says the seal is armed; ``None`` if it does not tell."""
    if event_type in (EventType.ARMED, EventType.DISARMED):
        return bool(event_type == EventType.ARMED)
    if event_type not in _ARMED_STATE_EVENTS:
        return None
    armed = payload.get("armed")
    return armed if isinstance(armed, bool) else None
