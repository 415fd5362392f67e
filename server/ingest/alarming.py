"""Which stored events and statuses raise or close which alarms (applied in the ingest's transaction).

- ``intrusion``, ``tamper``, ``camera_blind``, ``camera_lost``, ``outbox_full``, ``event_lost``, ``snapshot_lost``
  events raise the alarm of that kind — except an intrusion the camera did not confirm (``warning:
  suppressed_not_seen``), and an intrusion or tamper of a *disarmed* seal (``armed: false``) while its disarming is
  expected: its case is ``lifting`` (a removal was approved and the seal sent its disarm), ``lifted`` or ``closed``
  (:mod:`server.ingest.disarmed`); those are logged only. Any other disarmed intrusion or tamper raises the alarm of
  its kind like an armed one — same kind, severity, sound and notifications: the judge must see the intrusion —
  marked ``disarmed_while_sealed`` (the seal said it was disarmed while no removal of its case was under way).
- A seal that requires camera confirmation commits the intrusion at once with ``warning: pending_confirmation``
  and decides within about a second; the decision comes in the ``snapshot_taken`` event naming the intrusion
  (``trigger_seq``). The alarm is raised then, if the warning was ``played`` — the court opted into confirmation to
  cut false alarms. A box destroyed inside that second still leaves its intrusion in the case log, and its
  vanishing raises ``offline`` (the Last Will).
- ``camera_recovered`` closes ``camera_blind``, ``camera_found`` closes ``camera_lost`` — the seal's live one, in
  whatever case it stands (the seal's leaving a case closes them there, but skips one another transaction holds).
- ``sensor_flapping`` (a PIR or tamper switch flapping: its edges merged into signed counts; each summary folds into
  the live alarm, however long after the last) and ``sensor_stuck`` (a PIR reading motion too long) raise their
  alarm; ``sensor_normal`` and ``sensor_unstuck`` close it, as above.
- These four are conditions (:data:`~server.alarms.state.CONDITIONS`): one live alarm per seal and case, closed by
  the system when the seal leaves the case (moved, unbound, lifted).
- The conditions an event raises and another closes (``camera_blind``, ``camera_lost``, ``sensor_flapping``,
  ``sensor_stuck``, ``speaker_failed``, ``clock_unsynced``) follow the seal's ``seq``, not the order its events are
  stored in: a raise stored after a newer recovery is evidence only and opens nothing, a recovery stored after a
  newer raise closes nothing (:mod:`server.ingest.condition_order`). ``case_mismatch`` is closed only by a stored
  event newer than the refused one its alarm names last.
- A *late* event — of a case the seal is no longer bound to, arriving after the unbinding (an offline seal draining
  its outbox) — raises only ``intrusion`` and ``tamper``, in that case, marked ``late``: what happened on the sealed
  premises while they were sealed concerns the case's judge; the health of a device that has left the site
  (camera, outbox) does not.
- Every alarm raised from an event whose ``ts`` lies more than
  :data:`~server.alarms.event_details.DELIVERED_LATE_AFTER` from when the court received it has ``received_at`` in
  its details, beside ``ts``, and ``delayed_s`` if the seal's own word on its clock at that event
  (:mod:`server.ingest.clock_word`) was that it was synchronised (a seal offline for days draining its outbox: the
  pages say it is a delayed report, 迟报, not one happening now); else ``clock_gap_s`` and ``clock_synced`` (the
  clock not synchronised, or never said: the time is in doubt, 时间存疑, and no delay is claimed)
  (:func:`~server.alarms.event_details.event_details`). A repeat folded into the alarm writes its own details: they
  say what the last occurrence was; the opening occurrence's report, if delayed or in doubt, is kept under
  ``opening``.
- A warning the seal could not play raises ``speaker_failed``: an ``intrusion``, ``tamper``, ``snapshot_taken``,
  ``warning_result`` or ``test_warning`` ``command_ack`` whose warning (``warning``, the ack's ``result``) is
  ``failed`` or names a language that ``failed``, and a ``heartbeat`` whose ``speaker`` is ``failed`` (if no such
  alarm is live: the failure may have been a repeat, which has no event). Such an event whose warning ``played``
  (or a heartbeat whose ``speaker`` is ``ok``) closes it. Not for late events: the device has left the site.
- A ``heartbeat`` whose ``clock.synced`` is false raises ``clock_unsynced`` (medium: the times the seal signs may be
  wrong); a heartbeat, ``agent_started`` or ``clock_stepped`` saying the clock is synchronised closes it. Not for
  late events.
- An event refused as ``wrong_case`` raises ``case_mismatch`` in the seal's current case
  (:mod:`server.ingest.case_mismatch`); an event stored in that case (not a late one) closes it.
- Every stored event the court received after the fault that raised ``offline`` closes it (the seal is speaking
  again: :mod:`server.alarms.back_online`; one received before — a worker behind stores the seal's last events after
  another stored its Will — leaves it live). An ``offline`` status (the Last Will, or a clean shutdown) raises it —
  at once only without a grace (``[alarms] offline_grace_s`` = 0); with one, the liveness check raises it once the
  grace has passed without a new signed event received after the status (:mod:`server.ingest.liveness`): a seal that
  restarts cleanly pages nobody.
- A gap in a chain raises ``missing_events`` once it is ``gap_wait_s`` old (:mod:`server.ingest.gap_wait`); a change
  of the missing ranges updates it, and closes it once nothing is missing.
  Its details hold the count of missing events and at most ``2 * LISTED_RANGES`` ranges (the first and the last;
  ``missing_ranges``: how many there are), and the untracked span past ``MAX_TRACKED_GAPS`` ranges, if any
  (``missing_untracked``: ``first``, ``last``, ``count``), never the whole list.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from seal_protocol import Envelope, EventType, SealStatus
from server.alarms.back_online import closes_offline
from server.alarms.book import AlarmBook
from server.alarms.event_details import MARKS, ClockWord, event_details
from server.alarms.models import Alarm
from server.alarms.state import AlarmKind
from server.ingest.chain import ChainChange
from server.ingest.clock_word import clock_word
from server.ingest.condition_order import ConditionOrder, clock_synced, speaker_outcome
from server.ingest.disarmed import ExpectedDisarms, says_disarmed

EVENT_ALARMS = {
    EventType.INTRUSION: AlarmKind.INTRUSION,
    EventType.TAMPER: AlarmKind.TAMPER,
    EventType.CAMERA_BLIND: AlarmKind.CAMERA_BLIND,
    EventType.CAMERA_LOST: AlarmKind.CAMERA_LOST,
    EventType.OUTBOX_FULL: AlarmKind.OUTBOX_FULL,
    EventType.EVENT_LOST: AlarmKind.EVENT_LOST,
    EventType.SNAPSHOT_LOST: AlarmKind.SNAPSHOT_LOST,
    EventType.SENSOR_FLAPPING: AlarmKind.SENSOR_FLAPPING,
    EventType.SENSOR_STUCK: AlarmKind.SENSOR_STUCK,
}
RECOVERIES = {
    EventType.CAMERA_RECOVERED: AlarmKind.CAMERA_BLIND,
    EventType.CAMERA_FOUND: AlarmKind.CAMERA_LOST,
    EventType.SENSOR_NORMAL: AlarmKind.SENSOR_FLAPPING,
    EventType.SENSOR_UNSTUCK: AlarmKind.SENSOR_STUCK,
}


LATE_ALARMS = frozenset({AlarmKind.INTRUSION, AlarmKind.TAMPER})
#: The mark of an intrusion's or tamper's alarm whose seal said it was disarmed while no removal expected it.
DISARMED_WHILE_SEALED = "disarmed_while_sealed"


class EventAlarms:
    """The alarms the events of one batch raise or close (:meth:`on_event`), in its transaction. ``stored``: the
    batch's event rows, whose cases :class:`~server.ingest.disarmed.ExpectedDisarms` reads once, if a disarmed
    seal's intrusion or tamper is among them. ``max_seq``: a seal's highest stored seq, this batch's events included
    (:meth:`~server.ingest.chain.ChainBook.max_seq`): a condition follows the seal's order, not the arrival's
    (:mod:`server.ingest.condition_order`)."""

    def __init__(
        self,
        book: AlarmBook,
        session: Session,
        stored: Sequence[Mapping[str, object]],
        max_seq: Callable[[str], int],
    ) -> None:
        self.book = book
        self.session = session
        self.disarms = ExpectedDisarms(session, stored)
        self.order = ConditionOrder(session, max_seq, stored)

    def on_event(
        self, envelope: Envelope, *, case_no: str, row_id: Callable[[], int], at: datetime, late: bool = False
    ) -> None:
        """The alarms an event stored in ``case_no`` raises or closes. ``row_id`` gives its stored row's id, for
        the alarms that name it (asked only then: most events raise none). ``late``: the event belongs to a binding
        of the seal that has ended."""
        book = self.book
        device_id = envelope.device_id
        clock = clock_word(self.session, envelope)

        def overruled(kind: AlarmKind, holds: bool) -> bool:
            return self.order.overruled(envelope, kind, holds=holds)

        note = f"event seq {envelope.seq} received"  # after the fault that raised it: server.alarms.back_online
        book.close(AlarmKind.OFFLINE, device_id=device_id, at=at, note=note, only=closes_offline(at))
        if not late:  # the seal's events reach its case again (:mod:`server.ingest.case_mismatch`)
            note = f"event seq {envelope.seq} stored in case {case_no}"
            book.close(AlarmKind.CASE_MISMATCH, device_id=device_id, at=at, note=note, only=_refused_before(envelope))
        kind = EVENT_ALARMS.get(envelope.type)
        if _confirmed_intrusion(envelope):
            kind = AlarmKind.INTRUSION
        if kind is not None and (kind in LATE_ALARMS or not late) and _alarming(envelope) and not overruled(kind, True):
            disarmed = says_disarmed(envelope)
            if not disarmed or not self.disarms.expected(envelope, case_no=case_no, late=late):
                details = _details(envelope, at, clock, late=late, disarmed=disarmed)
                book.raise_alarm(kind, device_id=device_id, case_no=case_no, at=at, details=details, event_id=row_id())
        if not late:
            _speaker(book, envelope, clock, case_no=case_no, row_id=row_id, at=at, overruled=overruled)
            _clock(book, envelope, clock, case_no=case_no, row_id=row_id, at=at, overruled=overruled)
        recovered = RECOVERIES.get(envelope.type)
        if recovered is not None and book.live(device_id, recovered) and not overruled(recovered, False):
            note = f"{envelope.type.value} (seq {envelope.seq})"  # in whatever case it is live (one the move skipped)
            book.close(recovered, device_id=device_id, at=at, note=note)


def _refused_before(envelope: Envelope) -> Callable[[Alarm], bool]:
    """A ``case_mismatch`` alarm the stored ``envelope`` closes: one whose newest refused event (its details' ``seq``)
    is older than it. A stored event older than a refused one (two workers, or a batch holding both) is not the
    seal's newest word: the seal was still misconfigured after it."""

    def closes(alarm: Alarm) -> bool:
        refused = alarm.details.get("seq") if isinstance(alarm.details, dict) else None
        return not isinstance(refused, int) or refused < envelope.seq

    return closes


def _details(
    envelope: Envelope, received_at: datetime, clock: ClockWord, *, late: bool, disarmed: bool
) -> dict[str, Any]:
    """An event's alarm's details: the seal's payload first, then the envelope's own facts and what the court found
    (``late``, ``disarmed_while_sealed``: only when true; a delayed delivery: :func:`event_details`), written over any
    key of the same name a payload carries."""
    payload = {k: v for k, v in envelope.payload.items() if k not in MARKS}
    details = event_details(envelope, received_at, clock, **payload)
    for mark, found in (("late", late), (DISARMED_WHILE_SEALED, disarmed)):
        details.pop(mark, None)
        if found:
            details[mark] = True
    return details


def intrusion_kind(envelope: Envelope) -> AlarmKind | None:
    """``intrusion`` or ``tamper`` if the event reports one that raises its alarm (armed or not): an intrusion or
    tamper its camera neither dismissed nor has yet to decide on, or a ``snapshot_taken`` confirming an intrusion."""
    if _confirmed_intrusion(envelope):
        return AlarmKind.INTRUSION
    kind = EVENT_ALARMS.get(envelope.type)
    return kind if kind in LATE_ALARMS and _alarming(envelope) else None


def _confirmed_intrusion(envelope: Envelope) -> bool:
    """A ``snapshot_taken`` that settles an intrusion's pending camera confirmation with a warning (``started``,
    ``played``, ``busy``, or even ``failed``: the camera confirmed someone, whatever the speaker managed)."""
    payload = envelope.payload
    return (
        envelope.type is EventType.SNAPSHOT_TAKEN
        and payload.get("trigger") == "intrusion"
        and "warning" in payload
        and payload.get("warning") != "suppressed_not_seen"
    )


def _speaker(
    book: AlarmBook,
    envelope: Envelope,
    clock: ClockWord,
    *,
    case_no: str,
    row_id: Callable[[], int],
    at: datetime,
    overruled: Callable[[AlarmKind, bool], bool],
) -> None:
    """Raise ``speaker_failed`` on a warning that failed, close it on one that played — unless a newer word of the
    seal on its speaker, stored before, says the opposite (``overruled``: :mod:`server.ingest.condition_order`)."""
    device_id, kind = envelope.device_id, AlarmKind.SPEAKER_FAILED
    details = event_details(envelope, at, clock)
    outcome = speaker_outcome(envelope.type, envelope.payload)
    if outcome == "played":
        if book.live(device_id, kind) and not overruled(kind, False):
            note = f"the warning played ({envelope.type.value} seq {envelope.seq})"
            book.close(kind, device_id=device_id, at=at, note=note)
    elif outcome == "failed":
        if envelope.type is EventType.HEARTBEAT:
            if book.live(device_id, kind):  # already known: a heartbeat is no new occurrence
                return
            details["speaker_failure"] = envelope.payload.get("speaker_failure")
        else:
            details["warning_languages"] = envelope.payload.get("warning_languages")
        if not overruled(kind, True):
            book.raise_alarm(kind, device_id=device_id, case_no=case_no, at=at, details=details, event_id=row_id())


def _clock(
    book: AlarmBook,
    envelope: Envelope,
    clock_said: ClockWord,
    *,
    case_no: str,
    row_id: Callable[[], int],
    at: datetime,
    overruled: Callable[[AlarmKind, bool], bool],
) -> None:
    """Raise ``clock_unsynced`` on a heartbeat whose ``clock.synced`` is false (if no such alarm is live), close it
    on a heartbeat, an ``agent_started`` or a ``clock_stepped`` that says the clock is synchronised — unless a newer
    word of the seal on its clock, stored before, says the opposite (``overruled``). An ``agent_started`` does not
    raise it: a Pi without a real-time clock starts unsynchronised until NTP answers, within seconds; a heartbeat
    still unsynchronised says the clock is not being disciplined. ``null`` (the seal could not ask its kernel)
    changes nothing."""
    synced = clock_synced(envelope.type, envelope.payload)
    device_id, kind = envelope.device_id, AlarmKind.CLOCK_UNSYNCED
    if synced is True:
        if book.live(device_id, kind) and not overruled(kind, False):
            note = f"the seal's clock is synchronised ({envelope.type.value} seq {envelope.seq})"
            book.close(kind, device_id=device_id, at=at, note=note)
    elif synced is False and envelope.type is EventType.HEARTBEAT:
        if book.live(device_id, kind) or overruled(kind, True):  # live: already known, a heartbeat is no new occurrence
            return
        clock = envelope.payload["clock"]
        details = event_details(envelope, at, clock_said, clock=clock)
        book.raise_alarm(kind, device_id=device_id, case_no=case_no, at=at, details=details, event_id=row_id())


def _alarming(envelope: Envelope) -> bool:
    """Not an intrusion or tamper whose camera decided nobody was there, or has yet to decide. (Whether the seal
    was armed is :meth:`EventAlarms.on_event`'s question.)"""
    if envelope.type not in (EventType.INTRUSION, EventType.TAMPER):
        return True
    return envelope.payload.get("warning") not in ("suppressed_not_seen", "pending_confirmation")


def on_status(
    book: AlarmBook,
    device_id: str,
    state: SealStatus,
    *,
    case_no: str | None,
    at: datetime,
    ts: str | None,
    grace: bool = False,
    storage: Mapping[str, Any] | None = None,
) -> None:
    """An ``offline`` status (usually the broker's Last Will) raises the offline alarm, unless the seal has a
    ``grace`` to come back in (the liveness check raises it after that). ``online`` closes nothing: a status is not
    signed, so only the seal's next signed event received after ``at`` (:meth:`EventAlarms.on_event`) closes it:
    ``at``, when the court received the status, is the details' ``offline_since``, as in the alarm the liveness check
    raises after the grace. ``storage``: the storage report the seal's last ``online`` carried
    (:func:`~server.ingest.storage_alarm.storage_details`), in the details."""
    # An unbound seal (in storage) offline: no alarm.
    if state is SealStatus.OFFLINE and case_no is not None and not grace:
        details = {"reason": "offline_status", "status_ts": ts, "offline_since": at.isoformat(), **(storage or {})}
        book.raise_alarm(AlarmKind.OFFLINE, device_id=device_id, case_no=case_no, at=at, details=details)


#: Ranges a ``missing_events`` alarm lists: the first and the last this many, when there are more than twice as many.
LISTED_RANGES = 5


def on_chain_change(
    book: AlarmBook, change: ChainChange, *, case_no: str | None, at: datetime, due: bool = False
) -> None:
    """``due``: a gap is old enough to raise the alarm (:mod:`server.ingest.gap_wait`); else it is only updated."""
    if not change.after and change.untracked is None:
        book.close(AlarmKind.MISSING_EVENTS, device_id=change.device_id, at=at, note="every missing event arrived")
        return
    after = change.after
    listed = after if len(after) <= 2 * LISTED_RANGES else [*after[:LISTED_RANGES], *after[-LISTED_RANGES:]]
    details: dict[str, Any] = {
        "missing": [list(r) for r in listed],
        "missing_count": change.missing_count,
        "max_seq": change.max_seq,
    }
    if len(listed) < len(after):
        details["missing_ranges"] = len(after)  # "missing" lists the first and the last LISTED_RANGES of them
    if change.untracked is not None:  # past the ranges tracked one by one: how many, where, not which
        first, last, count = change.untracked
        details["missing_untracked"] = {"first": first, "last": last, "count": count}
    if case_no is not None and due:
        book.raise_alarm(AlarmKind.MISSING_EVENTS, device_id=change.device_id, case_no=case_no, at=at, details=details)
    else:  # some missing events arrived, others are still missing: the alarm says what is left
        book.update(AlarmKind.MISSING_EVENTS, device_id=change.device_id, details=details)
