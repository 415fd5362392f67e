"""The seal's own order for the condition alarms its events raise and close: a newer word overrules an older one.

Some of a seal's events say that a condition holds, others that it has cleared: ``camera_blind`` /
``camera_recovered``, ``camera_lost`` / ``camera_found``, ``sensor_flapping`` / ``sensor_normal``, ``sensor_stuck`` /
``sensor_unstuck``, a warning that ``failed`` / ``played`` (and a heartbeat's
``speaker``: ``speaker_failed``), a heartbeat whose clock is not synchronised / any heartbeat, ``agent_started`` or
``clock_stepped`` that says it is (``clock_unsynced``). They are not always stored in the order the seal made them:
with several workers sharing the subscription, an event that waited for its predecessor past the gap wait's cap, a
predecessor arriving late, a worker restarted with messages in hand — a seal's ``camera_recovered`` (seq n+1) may be
stored before its ``camera_blind`` (seq n). Taken in arrival order, the recovery closed nothing and the blind event
then opened an alarm that stayed open, though the seal's newest word was that its camera was fine.

So an event is *overruled* on a condition — raises or closes nothing of it — when the newest word on that
condition among the seal's events with a higher ``seq`` already stored (by earlier transactions, or earlier in the
same batch) says the opposite. The order is the seal's ``seq``, as for its armed state (``armed_seq``,
:mod:`server.ingest.rows`):

- a raise stored after a newer recovery is evidence (in the case log and the export) and opens nothing — not an
  alarm opened and closed at once either: nothing was wrong by the time the court heard of it, and nobody should be
  paged for it — also when the two come in one batch, the newer first (a batch applies its messages in the order
  received). Stored in the seal's order, the same episode opens and closes an alarm: newer words later in the
  batch do not overrule an event.
- a recovery stored after a newer raise closes nothing: the alarm that raise opened stays live.
- a word after a newer one saying the same does what it did before (a raise folds into the live alarm, a heartbeat
  that is no new occurrence counts nothing, a recovery closes what is live).

Nothing is kept for this but the events themselves: the seal's words are its stored events, read only for an event
below the seal's newest stored ``seq`` (its chain's ``max_seq``, this batch's events included) whose newer events
were not all stored by this batch — an event filling a gap, rare — and then only from the newest down to the first
that speaks of the condition. Two workers storing a raise and a recovery of one seal at once cannot both miss the
other: every transaction storing a seal's events holds its chain state's lock (the first in the lock order of
:mod:`server.ingest.rows`, unchanged) from before it decides until it commits, so the second reads (``READ
COMMITTED``) the first's events. A batch's events are inserted before its alarms are settled.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

from sqlalchemy import Table, bindparam, select
from sqlalchemy.orm import Session

from seal_protocol import Envelope, EventType
from server.alarms.state import AlarmKind
from server.evidence.models import Event

_EVENTS = cast(Table, Event.__table__)

#: What an event says of a condition: True it holds, False it has cleared, None nothing.
Word = Callable[[EventType, Mapping[str, Any]], bool | None]

_WARNING_EVENTS = frozenset({EventType.INTRUSION, EventType.TAMPER, EventType.SNAPSHOT_TAKEN, EventType.WARNING_RESULT})


def speaker_outcome(event_type: EventType, payload: Mapping[str, Any]) -> str | None:
    """``failed`` if the event reports a warning (or a language of it) that failed, ``played`` if one that played
    in full, else None (no warning, or one still under way)."""
    if event_type is EventType.HEARTBEAT:
        return {"failed": "failed", "ok": "played"}.get(str(payload.get("speaker")))
    if event_type in _WARNING_EVENTS:
        warning = payload.get("warning")
    elif event_type is EventType.COMMAND_ACK and payload.get("action") == "test_warning":
        warning = payload.get("result")
    else:
        return None
    languages = payload.get("warning_languages")
    if warning == "failed" or (
        isinstance(languages, list) and any(isinstance(i, dict) and i.get("result") == "failed" for i in languages)
    ):
        return "failed"
    return "played" if warning == "played" else None


def clock_synced(event_type: EventType, payload: Mapping[str, Any]) -> bool | None:
    """What a ``heartbeat``, ``agent_started`` or ``clock_stepped`` says of the seal's clock: synchronised (True),
    not (False), or nothing (None: another event, or the seal could not ask its kernel)."""
    if event_type in (EventType.HEARTBEAT, EventType.AGENT_STARTED):
        clock = payload.get("clock")
        synced = clock.get("synced") if isinstance(clock, dict) else None
    elif event_type is EventType.CLOCK_STEPPED:
        synced = payload.get("synced")
    else:
        return None
    return synced if isinstance(synced, bool) else None


def _speaker_word(event_type: EventType, payload: Mapping[str, Any]) -> bool | None:
    return {"failed": True, "played": False}.get(speaker_outcome(event_type, payload) or "")


def _clock_word(event_type: EventType, payload: Mapping[str, Any]) -> bool | None:
    """Only a heartbeat raises ``clock_unsynced`` (a Pi starts unsynchronised until NTP answers): an unsynchronised
    ``agent_started`` or step is no word on it; any of the three synchronised closes it."""
    synced = clock_synced(event_type, payload)
    if synced is False and event_type is not EventType.HEARTBEAT:
        return None
    return None if synced is None else not synced


def _pair(holds: EventType, cleared: EventType) -> Word:
    return lambda event_type, payload: {holds: True, cleared: False}.get(event_type)


#: The conditions the seal's events raise and close: the event types that may speak of each, and what they say.
WORDS: dict[AlarmKind, tuple[frozenset[EventType], Word]] = {
    AlarmKind.CAMERA_BLIND: (
        frozenset({EventType.CAMERA_BLIND, EventType.CAMERA_RECOVERED}),
        _pair(EventType.CAMERA_BLIND, EventType.CAMERA_RECOVERED),
    ),
    AlarmKind.CAMERA_LOST: (
        frozenset({EventType.CAMERA_LOST, EventType.CAMERA_FOUND}),
        _pair(EventType.CAMERA_LOST, EventType.CAMERA_FOUND),
    ),
    AlarmKind.SENSOR_FLAPPING: (
        frozenset({EventType.SENSOR_FLAPPING, EventType.SENSOR_NORMAL}),
        _pair(EventType.SENSOR_FLAPPING, EventType.SENSOR_NORMAL),
    ),
    AlarmKind.SENSOR_STUCK: (
        frozenset({EventType.SENSOR_STUCK, EventType.SENSOR_UNSTUCK}),
        _pair(EventType.SENSOR_STUCK, EventType.SENSOR_UNSTUCK),
    ),
    AlarmKind.SPEAKER_FAILED: (
        frozenset({EventType.HEARTBEAT, EventType.COMMAND_ACK, *_WARNING_EVENTS}),
        _speaker_word,
    ),
    AlarmKind.CLOCK_UNSYNCED: (
        frozenset({EventType.HEARTBEAT, EventType.AGENT_STARTED, EventType.CLOCK_STEPPED}),
        _clock_word,
    ),
}

#: Stored events of a seal above a seq and below another, of some types, newest first (a page of them).
_NEWER = (
    select(_EVENTS.c.seq, _EVENTS.c.type, _EVENTS.c.payload)
    .where(
        _EVENTS.c.device_id == bindparam("device_id"),
        _EVENTS.c.seq > bindparam("seq"),
        _EVENTS.c.seq < bindparam("below"),
        _EVENTS.c.type.in_(bindparam("types", expanding=True)),
    )
    .order_by(_EVENTS.c.seq.desc())
    .limit(bindparam("page"))
)
_PAGE = 50


class ConditionOrder:
    """Whether a stored event is overruled on a condition by a newer word of its seal stored before it (the module's
    doc). ``max_seq``: the seal's highest stored seq, this batch's events included
    (:meth:`~server.ingest.chain.ChainBook.max_seq`); ``stored``: the batch's event rows in the order they are settled,
    all inserted before the first question (a batch holding a seal's events in order needs no query)."""

    def __init__(self, session: Session, max_seq: Callable[[str], int], stored: Sequence[Mapping[str, object]]) -> None:
        self.session = session
        self.max_seq = max_seq
        self.stored = stored
        self._batch: dict[str, dict[int, tuple[int, EventType, Mapping[str, Any]]]] | None = None

    def overruled(self, envelope: Envelope, kind: AlarmKind, *, holds: bool) -> bool:
        """``envelope`` says ``kind`` holds (``holds``) or has cleared, and the newest word on ``kind`` among the
        seal's events with a higher seq stored before it says the opposite (False for a kind not in :data:`WORDS`)."""
        device_id, seq = envelope.device_id, envelope.seq
        top = self.max_seq(device_id)
        if kind not in WORDS or seq >= top:
            return False  # nothing of the seal is stored above it: the usual case
        types, word = WORDS[kind]
        batch = self._of_batch(device_id)  # seq -> (place in the batch, type, payload)
        here = batch[seq][0] if seq in batch else len(self.stored)
        newest: tuple[int, bool] | None = None  # (seq, what it says) of the newest word stored before it, if any
        above = 0
        for other, (place, event_type, payload) in batch.items():
            if other > seq:
                above += 1
                said = word(event_type, payload) if place < here and event_type in types else None
                if said is not None and (newest is None or other > newest[0]):
                    newest = (other, said)
        if above < top - seq:  # some of the events above it were stored by earlier transactions
            floor = newest[0] if newest is not None else seq
            params = {"device_id": device_id, "seq": floor, "types": sorted(t.value for t in types)}
            below = top + 1
            while below > floor + 1:
                rows = list(self.session.execute(_NEWER, {**params, "below": below, "page": _PAGE}))
                for other, event_type, payload in rows:
                    below = other
                    said = None if other in batch else word(EventType(event_type), payload or {})
                    if said is not None:
                        newest, below = (other, said), floor + 1
                        break
                if len(rows) < _PAGE:
                    break
        return newest is not None and newest[1] is not holds

    def _of_batch(self, device_id: str) -> dict[int, tuple[int, EventType, Mapping[str, Any]]]:
        if self._batch is None:
            self._batch = {}
            for place, row in enumerate(self.stored):
                of_seal = self._batch.setdefault(cast(str, row["device_id"]), {})
                payload = cast(Mapping[str, Any], row["payload"])
                of_seal[cast(int, row["seq"])] = (place, EventType(cast(str, row["type"])), payload)
        return self._batch.get(device_id, {})
