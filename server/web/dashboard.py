"""What the overview shows, read with the user's access checks (:mod:`server.auth.access`): the seals the user may
see (``seal_filter``); their events only for roles that may read events (``EVENT_READ``), alarms only for roles that
may read alarms (``ALARM_READ``: a debtor sees whether the seals are in place, not what they saw), pictures only for
roles that may view them (``SNAPSHOT_READ``) — what the API would show the same user, and nothing more.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, case, distinct, func, null, or_, select
from sqlalchemy.orm import InstrumentedAttribute, Session

from server.alarms.back_online import spoke_after
from server.alarms.models import Alarm
from server.alarms.state import LIVE_STATES, AlarmKind, AlarmState
from server.auth import access
from server.auth.access import Permission
from server.auth.models import User
from server.auth.users import usernames_by_id
from server.evidence.models import Event, Snapshot
from server.evidence.queries import PICTURE_NAMED
from server.seals.models import Seal
from server.seals.registry import is_online

#: How many of a seal's latest events are looked through for its last heartbeat and its last other event.
RECENT_EVENTS = 50
#: Alarm kinds that alert (and may sound): someone is on the premises, or at the box.
ALERTING = frozenset({AlarmKind.INTRUSION.value, AlarmKind.TAMPER.value})
MAX_ALARMS = 200
#: Seals per statement (an IN list of this many ids stays within every database's limit on parameters).
CHUNK = 500


@dataclass(frozen=True)
class EventLine:
    type: str
    ts: datetime
    received_at: datetime


@dataclass(frozen=True)
class SealTile:
    seal: Seal
    online: bool
    live_alarms: int
    open_alarms: int
    grace_left_s: int | None  # said offline, within its grace: seconds until its offline alarm
    last_heartbeat: EventLine | None
    last_event: EventLine | None  # the last event that is not a heartbeat (among the recent ones)
    snapshot_sha: str | None  # None also when the user's role may not view pictures

    @property
    def rank(self) -> int:
        """Where the tile goes among the others: seals with open alarms (0), with acknowledged ones (1), calm (2)."""
        return 0 if self.open_alarms else 1 if self.live_alarms else 2


@dataclass(frozen=True)
class Counts:
    online: int
    offline: int
    in_alarm: int | None  # None: the user's role may not read alarms
    total: int


@dataclass(frozen=True)
class AlarmRow:
    alarm: Alarm
    location: str
    acknowledged_by: str | None
    can_ack: bool

    @property
    def alerting(self) -> bool:
        """Open, and someone is on the premises: an intrusion or tamper, or one the seal reported under another case
        number (a ``case_mismatch`` whose refused events held one: no case log holds it)."""
        alarm = self.alarm
        reported = alarm.kind == AlarmKind.CASE_MISMATCH.value and bool(alarm.details.get("intrusions"))
        return alarm.state == AlarmState.OPEN.value and (alarm.kind in ALERTING or reported)


def visible_seals(session: Session, user: User, device_ids: Collection[str] | None = None) -> list[Seal]:
    """The seals ``user`` may see (all, or those of ``device_ids``): bound ones by case, then the court's stock."""
    query = select(Seal).where(access.seal_filter(session, user))
    if device_ids is not None:
        query = query.where(Seal.device_id.in_(device_ids))
    seals = list(session.scalars(query))
    return sorted(seals, key=lambda s: (s.case_no is None, s.case_no or "", s.device_id))


@dataclass(frozen=True)
class LiveAlarms:
    """A seal's live alarms of one case, counted (a seal may have thousands: the tile shows how many, not which)."""

    live: int = 0
    open: int = 0
    offline: int = 0  # of them, ``offline`` alarms


def live_alarms_by_seal(session: Session, device_ids: Collection[str]) -> dict[tuple[str, str], LiveAlarms]:
    """The live alarms of ``device_ids``, counted by (seal, case), in one statement (``ix_alarms_device_id_state``)."""
    found: dict[tuple[str, str], LiveAlarms] = {}
    if not device_ids:
        return found
    is_open = func.sum(case((Alarm.state == AlarmState.OPEN.value, 1), else_=0))
    offline = func.sum(case((Alarm.kind == AlarmKind.OFFLINE.value, 1), else_=0))
    query = (
        select(Alarm.device_id, Alarm.case_no, func.count(), is_open, offline)
        .where(Alarm.device_id.in_(device_ids), Alarm.state.in_(LIVE_STATES))
        .group_by(Alarm.device_id, Alarm.case_no)
    )
    for device_id, case_no, live, opened, offlines in session.execute(query):
        found[(device_id, case_no)] = LiveAlarms(int(live), int(opened or 0), int(offlines or 0))
    return found


NO_ALARMS = LiveAlarms()


def seal_tiles(
    session: Session, user: User, seals: list[Seal], *, now: datetime, offline_after_s: int, grace_s: float
) -> list[SealTile]:
    """The tiles of ``seals`` (already filtered by :func:`visible_seals`), seals with open alarms first."""
    may_read_alarms = access.has_permission(user, Permission.ALARM_READ)
    alarms = live_alarms_by_seal(session, [s.device_id for s in seals] if may_read_alarms else [])
    pictures = access.has_permission(user, Permission.SNAPSHOT_READ)
    events = access.has_permission(user, Permission.EVENT_READ)
    recent = _recent_by_seal(session, user, seals, pictures=pictures, events=events)
    tiles = []
    for seal in seals:
        heartbeat, event, snapshot = recent.get(seal.device_id, (None, None, None))
        # Only the alarms of the case the seal guards now: a late alarm of a former case is that case's business.
        live = alarms.get((seal.device_id, seal.case_no), NO_ALARMS) if seal.case_no is not None else NO_ALARMS
        tiles.append(
            SealTile(
                seal=seal,
                online=is_online(seal, now=now, offline_after_s=offline_after_s),
                live_alarms=live.live,
                open_alarms=live.open,
                grace_left_s=_grace_left(seal, live, now=now, grace_s=grace_s),
                last_heartbeat=heartbeat,
                last_event=event,
                snapshot_sha=snapshot,
            )
        )
    return sorted(tiles, key=lambda t: t.rank)


def counts(session: Session, user: User, seals: list[Seal], *, now: datetime, offline_after_s: int) -> Counts:
    """Seals bound to a case: online, offline, with a live alarm (the court's stock is not counted)."""
    bound = [s for s in seals if s.case_no is not None]
    online = sum(1 for s in bound if is_online(s, now=now, offline_after_s=offline_after_s))
    in_alarm = None
    if access.has_permission(user, Permission.ALARM_READ):
        in_alarm = 0
        ids = [s.device_id for s in bound]
        for start in range(0, len(ids), CHUNK):  # counted by the database: no alarm is loaded
            query = select(func.count(distinct(Seal.device_id))).join(
                Alarm, (Alarm.device_id == Seal.device_id) & (Alarm.case_no == Seal.case_no)
            )
            query = query.where(Alarm.state.in_(LIVE_STATES), Seal.device_id.in_(ids[start : start + CHUNK]))
            in_alarm += session.scalar(query) or 0
    return Counts(online=online, offline=len(bound) - online, in_alarm=in_alarm, total=len(bound))


def alarm_rows(session: Session, user: User, *, limit: int = MAX_ALARMS) -> list[AlarmRow]:
    """The live alarms of the cases ``user`` may see (none if the role may not read alarms): open ones first, newest
    first within each state."""
    if not access.has_permission(user, Permission.ALARM_READ):
        return []
    visible = access.case_filter(session, user, Alarm.case_no)
    alarms: list[Alarm] = []
    for state in (AlarmState.OPEN.value, AlarmState.ACKNOWLEDGED.value):  # the limit after the order: open first
        if len(alarms) < limit:
            query = select(Alarm).where(Alarm.state == state, visible).order_by(Alarm.id.desc())
            alarms += session.scalars(query.limit(limit - len(alarms)))
    return rows_of(session, user, alarms)


def alarms_signature(rows: list[AlarmRow], total: int) -> tuple[object, ...]:
    """What the overview's alarm list shows of ``rows`` (and the count of the others): equal signatures, equal lists."""
    shown = [
        (r.alarm.id, r.alarm.state, r.alarm.count, r.alarm.last_seen_at, r.alarm.acknowledged_note, r.acknowledged_by)
        + (r.location, r.can_ack, repr(r.alarm.details))
        for r in rows
    ]
    return (total, *shown)


def live_alarm_total(session: Session, user: User) -> int:
    """How many live alarms the user may see (the overview lists at most :data:`MAX_ALARMS` and says so)."""
    if not access.has_permission(user, Permission.ALARM_READ):
        return 0
    query = select(func.count(Alarm.id)).where(
        Alarm.state.in_(LIVE_STATES), access.case_filter(session, user, Alarm.case_no)
    )
    return session.scalar(query) or 0


def rows_of(session: Session, user: User, alarms: list[Alarm]) -> list[AlarmRow]:
    """The rows of ``alarms``, each with its seal's place while the seal still guards the alarm's case (a seal since
    moved on stands at another case's premises: not for this alarm's readers)."""
    query = select(Seal.device_id, Seal.case_no, Seal.location).where(Seal.device_id.in_({a.device_id for a in alarms}))
    places: dict[tuple[str, str | None], str] = {(r.device_id, r.case_no): r.location for r in session.execute(query)}
    names = usernames_by_id(session, {a.acknowledged_by for a in alarms})
    may_ack = access.has_permission(user, Permission.ALARM_ACK)
    return [
        AlarmRow(
            alarm=a,
            location=places.get((a.device_id, a.case_no), ""),
            acknowledged_by=names.get(a.acknowledged_by) if a.acknowledged_by is not None else None,
            can_ack=may_ack and a.state == AlarmState.OPEN.value,
        )
        for a in alarms
    ]


def _of_the_seal_s_case(session: Session, user: User, column: InstrumentedAttribute[str]) -> ColumnElement[bool]:
    """A WHERE clause on a row's case number ``column``, correlated with :class:`Seal`: a case the user may see, and
    the case the seal guards now (a seal moved on shows nothing of its former case; a stock seal, of any case the
    user may see)."""
    return and_(
        access.case_filter(session, user, column),  # also for a bound seal: it may have moved since it was listed
        or_(Seal.case_no.is_(None), column == Seal.case_no),
    )


def _recent_by_seal(
    session: Session, user: User, seals: list[Seal], *, pictures: bool, events: bool
) -> dict[str, tuple[EventLine | None, EventLine | None, str | None]]:
    """Per seal: its last heartbeat and its last other event among its :data:`RECENT_EVENTS` latest numbers (a seal
    that sent only heartbeats for a while shows its latest event, a heartbeat, as its last event), and its latest
    picture — only of the case it guards now (of a stock seal: of cases the user may see) — in a few statements for
    all the seals, not a query per seal (each seal's rows are still found through its index, ``(device_id, seq)``)."""
    if not seals or not (pictures or events):
        return {}
    last_seq = select(func.max(Event.seq)).where(Event.device_id == Seal.device_id).correlate(Seal).scalar_subquery()

    def latest(*where: Any) -> Any:
        query = select(Event.id).where(
            Event.device_id == Seal.device_id,
            Event.seq > last_seq - RECENT_EVENTS,
            _of_the_seal_s_case(session, user, Event.case_no),
            *where,
        )
        return query.order_by(Event.seq.desc()).limit(1).correlate(Seal).scalar_subquery()

    snapshot = (
        select(Snapshot.sha256)
        # the latest picture a signed event names: not one anyone with the seal's MQTT password could send
        .where(Snapshot.device_id == Seal.device_id, _of_the_seal_s_case(session, user, Snapshot.case_no))
        .where(PICTURE_NAMED)
        .order_by(Snapshot.id.desc())
        .limit(1)
        .correlate(Seal)
        .scalar_subquery()
    )
    columns = [latest(Event.type == "heartbeat"), latest(Event.type != "heartbeat"), latest()] if events else []
    rows: list[Any] = []
    ids = [s.device_id for s in seals]
    for start in range(0, len(ids), CHUNK):
        query = select(Seal.device_id, snapshot if pictures else null(), *columns)
        rows += session.execute(query.where(Seal.device_id.in_(ids[start : start + CHUNK]))).all()
    wanted = [event_id for row in rows for event_id in row[2:] if event_id is not None]
    lines: dict[int, EventLine] = {}
    for start in range(0, len(wanted), CHUNK):
        query = select(Event.id, Event.type, Event.ts, Event.received_at).where(
            Event.id.in_(wanted[start : start + CHUNK])
        )
        lines.update({row.id: EventLine(row.type, row.ts, row.received_at) for row in session.execute(query)})
    found: dict[str, tuple[EventLine | None, EventLine | None, str | None]] = {}
    for row in rows:
        heartbeat, other, last = (lines.get(i) if i is not None else None for i in (row[2:] or (None,) * 3))
        found[row[0]] = (heartbeat, other or last, row[1])
    return found


def _grace_left(seal: Seal, live: LiveAlarms, *, now: datetime, grace_s: float) -> int | None:
    """Seconds until a seal that said it is offline gets its offline alarm, if it is within its grace."""
    if seal.status != "offline" or seal.status_changed_at is None or seal.case_no is None or grace_s <= 0:
        return None
    if live.offline:
        return None
    if spoke_after(seal.last_seen_at, seal.status_changed_at):
        return None  # back already: a signed event received after the offline status
    left = (seal.status_changed_at + timedelta(seconds=grace_s) - now).total_seconds()
    return max(0, math.ceil(left))
