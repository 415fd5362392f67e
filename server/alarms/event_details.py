"""The facts of a seal's event that every alarm raised from it carries in its details: the event's type, seq and
time, ``simulated: true`` when the seal signed it as a simulated seal's (``seal-agent simulate``, docs/protocol.md)
— which the pages show beside the alarm, whatever its kind — and, for an event the court received well after the
time it bears (:data:`DELIVERED_LATE_AFTER`: a seal that was offline draining its outbox, or a clock that is
behind), ``received_at`` and ``delayed_s``, so that the pages say when it happened by the seal's clock and when the
court received it, and alert for it as a delayed report, not as something happening now. Each alarm raised from an
event builds its details here, so that none leaves the marks out."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from seal_protocol import Envelope
from seal_protocol.envelope import SIMULATED_FIELD, is_simulated, utc_now_ms

#: An event received more than this long after its ``ts`` is a delayed report: the default of ``offline_after_s``
#: (a seal silent this long is shown offline), fixed here so that every court's stored alarms mean the same. A live
#: seal's events arrive within seconds; one this late was held back by the seal (offline), or its clock is behind.
DELIVERED_LATE_AFTER = timedelta(seconds=180)
#: The keys :func:`event_details` writes over a payload's key of the same name.
MARKS = frozenset({"event_type", "seq", "ts", SIMULATED_FIELD, "received_at", "delayed_s"})


def event_details(envelope: Envelope, received_at: datetime, /, **more: Any) -> dict[str, Any]:
    """``event_type``, ``seq``, ``ts`` of ``envelope``, then ``more``, then the marks, written last (no other key
    takes their place): ``simulated: true`` for a simulated seal's event, and ``received_at`` (the court's time, in
    the ``ts`` shape) with ``delayed_s`` (whole seconds after ``ts``) for an event received more than
    :data:`DELIVERED_LATE_AFTER` after its ``ts``."""
    details: dict[str, Any] = {"event_type": envelope.type.value, "seq": envelope.seq, "ts": envelope.ts, **more}
    for mark in MARKS - {"event_type", "seq", "ts"}:
        details.pop(mark, None)
    return details | event_marks(envelope, received_at)


def event_marks(envelope: Envelope, received_at: datetime) -> dict[str, Any]:
    """Only the marks of :func:`event_details`, for an alarm whose details are not the event's (a refused command's
    arm or disarm alarm): ``simulated``, ``received_at`` and ``delayed_s``, those that hold."""
    marks: dict[str, Any] = {}
    if is_simulated(envelope.payload):
        marks[SIMULATED_FIELD] = True
    delay = delivery_delay(envelope, received_at)
    if delay is not None:
        marks["received_at"] = utc_now_ms(received_at)
        marks["delayed_s"] = int(delay.total_seconds())
    return marks


def delivery_delay(envelope: Envelope, received_at: datetime) -> timedelta | None:
    """How long after its ``ts`` (the seal's clock) the court received ``envelope``, if more than
    :data:`DELIVERED_LATE_AFTER`; else ``None``."""
    delay = received_at - envelope.occurred_at
    return delay if delay > DELIVERED_LATE_AFTER else None
