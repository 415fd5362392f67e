"""What a seal had last said of its clock at an event's place in its chain (docs/protocol.md, "The seal's clock"):
the event's own ``clock`` if it has one (a ``heartbeat``, ``agent_started``, ``clock_stepped``), else the newest of
those stored below its seq that says ``synced`` ``true`` or ``false`` (``null`` says nothing either way). The alarms
ask it only of an event whose ``ts`` lies far from its receipt (:mod:`server.alarms.event_details`): whether the
court may call the difference a delivery delay. A batch's events are inserted before its alarms are settled, so the
seal's words earlier in the same batch are read too."""

from __future__ import annotations

from typing import cast

from sqlalchemy import Table, bindparam, select
from sqlalchemy.orm import Session

from seal_protocol import Envelope, EventType
from server.alarms.event_details import ClockWord
from server.evidence.models import Event
from server.ingest.condition_order import clock_synced

_EVENTS = cast(Table, Event.__table__)
_CLOCK_EVENTS = sorted(t.value for t in (EventType.HEARTBEAT, EventType.AGENT_STARTED, EventType.CLOCK_STEPPED))
#: Words read at most: a seal whose newest this many all say ``null`` has said nothing the court can use.
WORDS_READ = 20
_NEWEST_WORDS = (
    select(_EVENTS.c.type, _EVENTS.c.payload)
    .where(
        _EVENTS.c.device_id == bindparam("device_id"),
        _EVENTS.c.seq < bindparam("seq"),
        _EVENTS.c.type.in_(bindparam("types", expanding=True)),
    )
    .order_by(_EVENTS.c.seq.desc())
    .limit(WORDS_READ)
)


def clock_word(session: Session, envelope: Envelope) -> ClockWord:
    """The seal's word on its clock at ``envelope``'s seq, read when asked: True synchronised, False not, None
    nothing said."""

    def ask() -> bool | None:
        own = clock_synced(envelope.type, envelope.payload)
        if own is not None:
            return own
        params = {"device_id": envelope.device_id, "seq": envelope.seq, "types": _CLOCK_EVENTS}
        for event_type, payload in session.execute(_NEWEST_WORDS, params):
            said = clock_synced(EventType(event_type), payload or {})
            if said is not None:
                return said
        return None

    return ask
