"""The facts of a seal's event that every alarm raised from it carries in its details: the event's type, seq and
time, ``simulated: true`` when the seal signed it as a simulated seal's (``seal-agent simulate``, docs/protocol.md)
— which the pages show beside the alarm, whatever its kind — and, for an event whose ``ts`` lies more than
:data:`DELIVERED_LATE_AFTER` from the moment the court received it, ``received_at`` and one of two marks:

- ``delayed_s`` (迟报, a delayed report): the court received it this many seconds after its ``ts``, and the seal's own
  signed word on its clock in force at the event's seq (its own ``clock``, or the newest ``heartbeat``,
  ``agent_started`` or ``clock_stepped`` before it that says) was that the clock was synchronised — so the delay is
  the delivery's (a seal that was offline, draining its outbox), not the clock's;
- ``clock_gap_s`` with ``clock_synced`` (时间存疑, the time is in doubt): the seal had last said its clock was *not*
  synchronised (``false``), or had said nothing of it (``null``: a seal from before the clock fields, or one that
  could not ask its kernel), so the court cannot tell a delivery delay from a clock that is wrong. ``clock_gap_s`` is
  received − ``ts`` in whole seconds, negative for a clock ahead.

An alarm that a repeat folds into takes the repeat's details (they say what the last occurrence was), and keeps its
opening occurrence's report — its ``event_type``, ``seq``, ``ts`` and those marks, if it had any — under
:data:`OPENING` (:func:`folded_details`): the card still says that the alarm's first report was delayed, or in doubt,
after an on-time repeat, and an on-time opening is not called delayed by a delayed repeat. Each alarm raised from an
event builds its details here, so that none leaves the marks out."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

from seal_protocol import Envelope
from seal_protocol.envelope import SIMULATED_FIELD, is_simulated, utc_now_ms

#: An event received more than this long after its ``ts`` is a delayed report: the default of ``offline_after_s``
#: (a seal silent this long is shown offline), fixed here so that every court's stored alarms mean the same. A live
#: seal's events arrive within seconds; one this late was held back by the seal (offline), or its clock is wrong.
DELIVERED_LATE_AFTER = timedelta(seconds=180)
#: The key under which a folded alarm keeps its opening occurrence's report (:func:`folded_details`).
OPENING = "opening"
#: The marks of when an event was reported: what :func:`event_marks` finds of its delivery and its clock.
REPORT_MARKS = ("received_at", "delayed_s", "clock_gap_s", "clock_synced")
#: The keys :func:`event_details` writes over (or drops from) a payload's key of the same name: the court's findings.
MARKS = frozenset({"event_type", "seq", "ts", SIMULATED_FIELD, *REPORT_MARKS, OPENING})

#: What the seal had last said of its clock at an event's seq: synchronised (True), not (False), nothing (None).
#: Asked only for an event whose ``ts`` is far from its receipt (it may read the seal's stored events).
ClockWord = Callable[[], bool | None]


def event_details(envelope: Envelope, received_at: datetime, clock: ClockWord, /, **more: Any) -> dict[str, Any]:
    """``event_type``, ``seq``, ``ts`` of ``envelope``, then ``more``, then the marks, written last (no other key
    takes their place): ``simulated: true`` for a simulated seal's event, and the report marks of
    :func:`event_marks` (``clock``: the seal's word on its clock at the event)."""
    details: dict[str, Any] = {"event_type": envelope.type.value, "seq": envelope.seq, "ts": envelope.ts, **more}
    for mark in MARKS - {"event_type", "seq", "ts"}:
        details.pop(mark, None)
    return details | event_marks(envelope, received_at, clock)


def event_marks(envelope: Envelope, received_at: datetime, clock: ClockWord) -> dict[str, Any]:
    """Only the marks of :func:`event_details`, for an alarm whose details are not the event's (a refused command's
    arm or disarm alarm): ``simulated``; for an event whose ``ts`` is more than :data:`DELIVERED_LATE_AFTER` from
    ``received_at``, ``received_at`` (the court's time, in the ``ts`` shape) and either ``delayed_s`` (received that
    many whole seconds after ``ts``, the seal's clock synchronised by its own word) or ``clock_gap_s`` and
    ``clock_synced`` (the seal's clock not known to be synchronised: the module's doc)."""
    marks: dict[str, Any] = {}
    if is_simulated(envelope.payload):
        marks[SIMULATED_FIELD] = True
    gap = received_at - envelope.occurred_at
    if abs(gap) <= DELIVERED_LATE_AFTER:
        return marks
    synced = clock()
    if synced is True:
        if gap > DELIVERED_LATE_AFTER:  # (a synchronised clock ahead of the court's: the court's clock is in doubt)
            marks["received_at"] = utc_now_ms(received_at)
            marks["delayed_s"] = int(gap.total_seconds())
        return marks
    marks["received_at"] = utc_now_ms(received_at)
    marks["clock_gap_s"] = int(gap.total_seconds())
    marks["clock_synced"] = synced
    return marks


def folded_details(before: Mapping[str, Any], after: dict[str, Any], *, opening: bool) -> dict[str, Any]:
    """An alarm's details once a repeat whose details are ``after`` is folded into it: ``after`` (the last
    occurrence's), with :data:`OPENING` the opening occurrence's report if it was delayed or in doubt — taken from
    ``before`` if those are the opening's own details (``opening``: the alarm had one occurrence), else kept from
    ``before``'s :data:`OPENING`."""
    kept = _report(before) if opening else before.get(OPENING)
    return after | {OPENING: kept} if isinstance(kept, dict) else after


def _report(details: Mapping[str, Any]) -> dict[str, Any] | None:
    """The report of the occurrence ``details`` are of, if it was delayed or in doubt; else ``None``."""
    if "delayed_s" not in details and "clock_gap_s" not in details:
        return None
    keys = ("event_type", "seq", "ts", *REPORT_MARKS)
    return {key: details[key] for key in keys if key in details}
