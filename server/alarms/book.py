"""Raising, folding and auto-closing alarms inside the caller's transaction (the ingest's, the liveness check's).

An alarm is written in the same transaction as the event or status that caused it, so a crash loses neither and a
redelivered message (a no-op duplicate) does not raise it twice. Whoever raises alarms passes ``on_open``, called
with every alarm the book opens, in that transaction: the ingest and the liveness check queue its notifications
there (:mod:`server.notify.outbox`), so the alarms package does not depend on the notifications.

Folding: a repeat of an incident for a seal goes into the seal's live (open or acknowledged) alarm of that kind and
case — ``count + 1``, ``last_seen_at`` — if it comes within ``fold_window`` of that alarm's last occurrence; but an
intrusion or a tamper folds only into an *open* alarm: once it is acknowledged, a repeat opens a new alarm (alerted
and notified: someone acknowledged what they knew, a new break-in is news to them, and a sliding window would
otherwise keep every later one silent). A condition (offline, missing events) always folds into its live alarm.
Otherwise a new alarm opens. A fold writes the repeat's details (the last occurrence's), keeping the opening
occurrence's report if it was delayed or its time in doubt (:func:`~server.alarms.event_details.folded_details`).

A condition has at most one live alarm per seal and case. The book is read before the seals' rows are locked (the
lock order of :mod:`server.ingest.rows`), and a seal with no live alarm has no row to lock: two transactions may both
read an empty book. So, on PostgreSQL, before an alarm opens, the seal's alarm of that kind and case it would fold
into is looked for again (:data:`_LIVE_OF_KIND`): whoever raises an alarm holds by then what serialises it per seal
— the seal's row (the liveness check, a batch's statuses: :mod:`server.ingest.statuses`, an arm's or disarm's
answer or expiry), or its chain state (the conditions an event raises) — so an alarm another transaction opened and
committed meanwhile is seen, and folded into instead of opened twice. It is locked without waiting (``SKIP
LOCKED``): an alarm after the seal's row in the lock order; if a third transaction holds it (and will fold or close
it), this occurrence is left to it rather than risk a deadlock.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, bindparam, select
from sqlalchemy.orm import Session

from server.alarms.event_details import folded_details
from server.alarms.models import Alarm
from server.alarms.state import LIVE_STATES, AlarmKind, AlarmState, transition
from server.core.driver_sql import DriverSelect
from server.core.value_lists import one_of

_ALARMS = cast(Table, Alarm.__table__)
#: Which of some seals have a live alarm (Core columns: no ORM work per execution; one SQL text for any list).
_HAVING_LIVE = DriverSelect(
    select(_ALARMS.c.device_id)
    .where(one_of(_ALARMS.c.device_id, "device_ids"), _ALARMS.c.state.in_(LIVE_STATES))
    .distinct()
)
#: The live alarms of some seals, as ORM rows, locked (in id order) and loaded afresh. One statement for every batch:
#: a statement built per batch would also leave its parameters in reference cycles for the collector to find.
_LIVE_ALARMS = (
    select(Alarm)
    .where(one_of(_ALARMS.c.device_id, "device_ids"), _ALARMS.c.state.in_(LIVE_STATES))
    .order_by(Alarm.id)
    .with_for_update()
    .execution_options(populate_existing=True)
)

#: The seal's alarm of a kind in a case in some states, looked for again before an alarm opens (the module's doc).
_LIVE_OF_KIND = (
    select(Alarm)
    .where(
        _ALARMS.c.device_id == bindparam("device_id"),
        _ALARMS.c.kind == bindparam("kind"),
        _ALARMS.c.case_no == bindparam("case_no"),
        _ALARMS.c.state.in_(bindparam("states", expanding=True)),
    )
    .order_by(Alarm.id)
    .limit(1)
    .execution_options(populate_existing=True)
)
_LIVE_OF_KIND_LOCKED = _LIVE_OF_KIND.with_for_update(skip_locked=True)


#: The states of the alarm a repeat folds into, where not every live one (:data:`LIVE_STATES`): see the module's doc.
_FOLDS_INTO = {kind: frozenset({AlarmState.OPEN.value}) for kind in (AlarmKind.INTRUSION, AlarmKind.TAMPER)}


class AlarmBook:
    """The live alarms of some seals within one transaction. Loads them once, on first use, locked for update."""

    def __init__(
        self,
        session: Session,
        *,
        fold_window: timedelta,
        device_ids: Iterable[str] = (),
        on_open: Callable[[Alarm], None] | None = None,
    ) -> None:
        self.session = session
        self.on_open = on_open
        self.fold_window = fold_window
        self._wanted = set(device_ids)
        self._live: dict[str, list[Alarm]] = {}
        self.opened: list[Alarm] = []
        #: (device_id, case_no) of every alarm this book opened, folded into, updated or closed: what the pages'
        #: live bus is told once the transaction has committed (:func:`server.ingest.changes.live_changes`).
        self.touched: set[tuple[str, str]] = set()

    def expect(self, device_ids: Iterable[str]) -> None:
        """Load the alarms of these seals too, with the first that is needed (one query instead of several)."""
        self._wanted.update(device_ids)

    def lock(self) -> None:
        """Load the live alarms of every seal expected, locked, now: before the rows that come after them in the lock
        order (:mod:`server.ingest.rows`) are locked."""
        if missing := self._wanted - self._live.keys():
            self._load(missing)

    def live(self, device_id: str, kind: AlarmKind | None = None) -> list[Alarm]:
        """The seal's open and acknowledged alarms (of ``kind``), oldest first."""
        if device_id not in self._live:
            self._load(self._wanted - self._live.keys() | {device_id})
        return [a for a in self._live[device_id] if kind is None or a.kind == kind.value]

    def raise_alarm(
        self,
        kind: AlarmKind,
        *,
        device_id: str,
        case_no: str,
        at: datetime,
        details: dict[str, Any],
        event_id: int | None = None,
    ) -> Alarm:
        """Fold this occurrence into the seal's live alarm of ``kind``, or open a new one (and its notifications).
        ``event_id``: the stored event it comes from, named by id (its row is not loaded for that)."""
        states = _FOLDS_INTO.get(kind, LIVE_STATES)
        same_case = [a for a in self.live(device_id, kind) if a.case_no == case_no and a.state in states]
        if not same_case and self.session.get_bind().dialect.name == "postgresql":
            same_case = self._opened_meanwhile(kind, device_id, case_no, states)
            if same_case and same_case[0] not in self._live[device_id]:
                return same_case[0]  # held by another transaction: that one folds or closes it
        if same_case:
            alarm = max(same_case, key=lambda a: a.last_seen_at)
            if kind.is_condition or at - alarm.last_seen_at <= self.fold_window:
                alarm.details = folded_details(alarm.details or {}, details, opening=alarm.count == 1)
                alarm.count += 1
                alarm.last_seen_at = max(alarm.last_seen_at, at)
                if event_id is not None:
                    alarm.last_event_id = event_id
                self.touched.add((device_id, case_no))
                return alarm
        alarm = Alarm(
            case_no=case_no,
            device_id=device_id,
            kind=kind.value,
            severity=kind.severity.value,
            state=AlarmState.OPEN.value,
            opened_at=at,
            last_seen_at=at,
            count=1,
            details=details,
            first_event_id=event_id,
            last_event_id=event_id,
        )
        self.session.add(alarm)
        self._live[device_id].append(alarm)
        self.opened.append(alarm)
        self.touched.add((device_id, case_no))
        if self.on_open is not None:
            self.on_open(alarm)
        return alarm

    def update(self, kind: AlarmKind, *, device_id: str, details: dict[str, Any]) -> None:
        """Replace the details of the seal's live alarms of ``kind`` without counting an occurrence."""
        for alarm in self.live(device_id, kind):
            alarm.details = details
            self.touched.add((alarm.device_id, alarm.case_no))

    def close(
        self,
        kind: AlarmKind,
        *,
        device_id: str,
        at: datetime,
        note: str,
        case_no: str | None = None,
        only: Callable[[Alarm], bool] | None = None,
    ) -> list[Alarm]:
        """Close the seal's live alarms of ``kind`` (of ``case_no`` only, if given; those ``only`` says, if given) on
        behalf of the system (a recovery); return them."""
        closing = [
            a
            for a in self.live(device_id, kind)
            if (case_no is None or a.case_no == case_no) and (only is None or only(a))
        ]
        if not closing:  # the usual case: an event's recovery of an alarm the seal does not have
            return closing
        for alarm in closing:
            alarm.state = transition(alarm.state, AlarmState.CLOSED).value
            alarm.closed_at = at
            alarm.closed_by = None
            alarm.closed_note = f"system: {note}"
            self.touched.add((alarm.device_id, alarm.case_no))
        self._live[device_id] = [a for a in self._live[device_id] if a not in closing]
        return closing

    def _opened_meanwhile(self, kind: AlarmKind, device_id: str, case_no: str, states: Collection[str]) -> list[Alarm]:
        """The seal's alarm of ``kind`` in ``case_no`` in ``states`` that another transaction committed after this book
        was read: locked and in the book, or (held by a third transaction) neither; none: []."""
        params = {"device_id": device_id, "kind": kind.value, "case_no": case_no, "states": sorted(states)}
        alarm = self.session.scalars(_LIVE_OF_KIND_LOCKED, params).first()
        if alarm is not None:
            if alarm not in self._live[device_id]:
                self._live[device_id].append(alarm)
            return [alarm]
        return list(self.session.scalars(_LIVE_OF_KIND, params))

    def _load(self, device_ids: set[str]) -> None:
        for device_id in device_ids:
            self._live[device_id] = []
        # Most seals have no live alarm: a plain Core query finds the few that do, and only their alarms are loaded
        # as ORM rows (locked). The ingest asks for every batch, so this saves the ORM's work per batch.
        having = sorted(
            device_id for (device_id,) in _HAVING_LIVE.rows(self.session, {"device_ids": sorted(device_ids)})
        )
        if not having:
            return
        for alarm in self.session.scalars(_LIVE_ALARMS, {"device_ids": having}):
            self._live[alarm.device_id].append(alarm)
