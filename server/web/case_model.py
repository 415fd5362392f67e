"""What the case page (``/cases/{case_no}``) shows, read with the user's access checks: its seals, its timeline of
events with their pictures, its alarms and the commands sent to its seals. Each part only for the roles the API
shows it to (events ``EVENT_READ``, pictures ``SNAPSHOT_READ``, alarms ``ALARM_READ``, commands ``SEAL_STATUS``).
The removal requests are in :mod:`server.web.removal_model`.

The timeline leaves heartbeats out (every seal sends one every few minutes: the seal page shows the last one); it is
paged by event id, newest first, like ``GET /api/cases/{case_no}/events``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from seal_protocol import EventType
from server.alarms.models import Alarm
from server.alarms.state import LIVE_STATES, AlarmState
from server.auth import access
from server.auth.access import Permission
from server.auth.models import User
from server.auth.users import usernames_by_id
from server.commands.models import CourtCommand
from server.commands.refusals import refused_own_bytes, signed_sha256
from server.commands.state import CommandState
from server.evidence.models import NOT_HEARTBEAT, Event, Snapshot
from server.export.report_text import step_words
from server.seals.models import Seal, SealBinding
from server.seals.registry import current_bindings, is_online

#: Events per page of the timeline.
PAGE = 30
#: The most events a live update adds at once (a seal back from a long time offline sends its outbox); when more
#: came, the timeline is sent afresh.
LIVE_MAX = 200
#: The most rows the page's timeline keeps while live updates add to it (app.js drops the oldest; the page then
#: links to the timeline's page for them).
TIMELINE_MAX = 300
RECENT_COMMANDS = 20
CLOSED_ALARMS = 20
#: The most live alarms the page lists (every live update sends them again); it says how many it leaves out.
LIVE_ALARMS = 100
#: Payload fields worth a glance in the timeline (the whole signed envelope is one click away).
SUMMARY_FIELDS = (
    "warning",
    "camera",
    "camera_motion",
    "action",
    "result",
    "reason",
    "state",
    "trigger",
    "armed",
    "step_ms",  # clock_stepped: by how much the seal's clock jumped
    "synced",
)
#: Events whose pictures a ``snapshot_taken`` follows up, and at most how many follow-ups a page looks at for them.
_TRIGGER_TYPES = (EventType.INTRUSION.value, EventType.TAMPER.value)
FOLLOW_UPS_MAX = 1000
#: Commands a person sends from the case page (disarm and arm carry out a removal decision: not from here).
PAGE_COMMANDS = ("test_warning", "snapshot", "ping")


@dataclass(frozen=True)
class SealRow:
    seal: Seal
    online: bool
    last_heartbeat_at: datetime | None
    installed_at: datetime | None
    installed_by: str | None


@dataclass(frozen=True)
class FormerSeal:
    binding: SealBinding
    unbound_by: str | None


@dataclass(frozen=True)
class EventRow:
    event: Event
    shots: list[str]  # the pictures it names that are stored for the case (empty for roles without pictures)
    pending: int  # pictures it names that have not arrived (yet), and that the seal did not say it could not store
    not_stored: int  # pictures it names that the seal's follow-up (snapshot_taken) says it could not store
    named: int  # pictures it names
    summary: list[tuple[str, str]]


@dataclass(frozen=True)
class AlarmCard:
    alarm: Alarm
    location: str
    acknowledged_by: str | None
    closed_by: str | None
    can_ack: bool
    can_close: bool


@dataclass(frozen=True)
class CommandRow:
    command: CourtCommand
    issued_by: str | None

    @property
    def delivered(self) -> bool:
        """Only the seal's signed answer delivers a command: the broker's PUBACK does not."""
        return self.command.state == CommandState.ACKNOWLEDGED.value

    @property
    def shown_state(self) -> str:
        """The state the delivery column says: one marked ``expired`` before its expiry was withdrawn by the court (an
        approval withdrawn, its seal unbound: the dispatcher marks a command expired only once its expiry is past) —
        ``withdrawn_by_court``, never "no answer in time"."""
        c = self.command
        if c.state == CommandState.EXPIRED.value and c.updated_at < c.expires_at:
            return "withdrawn_by_court"
        return c.state

    @property
    def refused_own_bytes(self) -> bool:
        """The seal refused the court's own command because it could not verify its signature (or read it): the
        refusal's ``sha256`` is that of the bytes the court signed — worded as such, not as a forged command's."""
        c = self.command
        return c.reason is not None and refused_own_bytes(c.result, signed_sha256(c.signed))


def case_devices(session: Session, case_no: str, *, former: bool = True) -> set[str]:
    """Every seal bound to the case now, and (``former``) ever: a late picture of a former seal's event still enters
    its timeline."""
    now = set(session.scalars(select(Seal.device_id).where(Seal.case_no == case_no)))
    if not former:
        return now
    return now | set(session.scalars(select(SealBinding.device_id).where(SealBinding.case_no == case_no)))


def seal_rows(session: Session, case_no: str, *, now: datetime, offline_after_s: int) -> list[SealRow]:
    """The case's seals, each with its last heartbeat in the case: one statement for them all (a seal's last
    heartbeat is the newest row of its ``device_id, type, id`` index that is of the case)."""
    heartbeat = (
        select(Event.received_at)
        .where(Event.device_id == Seal.device_id, Event.type == EventType.HEARTBEAT.value, Event.case_no == case_no)
        .order_by(Event.id.desc())
        .limit(1)
        .correlate(Seal)
        .scalar_subquery()
    )
    query = select(Seal, heartbeat).where(Seal.case_no == case_no).order_by(Seal.device_id)
    seals = [(seal, at) for seal, at in session.execute(query)]
    bindings = current_bindings(session, device_ids=[s.device_id for s, _ in seals])
    names = usernames_by_id(session, {b.bound_by for b in bindings.values()})
    rows = []
    for seal, last_heartbeat_at in seals:
        binding = bindings.get(seal.device_id)
        rows.append(
            SealRow(
                seal=seal,
                online=is_online(seal, now=now, offline_after_s=offline_after_s),
                last_heartbeat_at=last_heartbeat_at,
                installed_at=binding.bound_at if binding else None,
                installed_by=names.get(binding.bound_by) if binding and binding.bound_by is not None else None,
            )
        )
    return rows


def former_seals(session: Session, case_no: str) -> list[FormerSeal]:
    """The case's ended bindings, newest first: seals removed (or moved) after their time on the case."""
    query = select(SealBinding).where(SealBinding.case_no == case_no, SealBinding.unbound_at.is_not(None))
    bindings = list(session.scalars(query.order_by(SealBinding.unbound_at.desc(), SealBinding.id.desc())))
    names = usernames_by_id(session, {b.unbound_by for b in bindings})
    return [FormerSeal(b, names.get(b.unbound_by) if b.unbound_by is not None else None) for b in bindings]


def timeline(
    session: Session, case_no: str, *, pictures: bool, before: int | None = None, limit: int = PAGE
) -> tuple[list[EventRow], int | None]:
    """A page of the case's events (heartbeats left out), newest first, and the cursor of the next page."""
    query = select(Event).where(Event.case_no == case_no, NOT_HEARTBEAT)
    if before is not None:
        query = query.where(Event.id < before)
    events = list(session.scalars(query.order_by(Event.id.desc()).limit(limit + 1)))
    page = events[:limit]
    return event_rows(session, case_no, page, pictures=pictures), page[-1].id if len(events) > limit else None


def events_after(session: Session, case_no: str, after: int | None, *, pictures: bool) -> list[EventRow] | None:
    """The newest page, and every event newer than ``after``: what a live update brings (the page keeps the rows
    it has and adds the others at the top) — or ``None`` if more than :data:`LIVE_MAX` came after ``after``: they
    are not all sent, and the page takes the newest page afresh instead (:func:`timeline`), without a hole."""
    query = select(Event).where(Event.case_no == case_no, NOT_HEARTBEAT)
    newest = list(session.scalars(query.order_by(Event.id.desc()).limit(PAGE)))
    if after is not None and len(newest) == PAGE and newest[-1].id > after:  # more came than a page
        newer = query.where(Event.id > after).order_by(Event.id.desc()).limit(LIVE_MAX + 1)
        newest = list(session.scalars(newer))
        if len(newest) > LIVE_MAX:
            return None
    return event_rows(session, case_no, newest, pictures=pictures)


def event_rows(session: Session, case_no: str, events: list[Event], *, pictures: bool) -> list[EventRow]:
    named = {e.id: _named_snapshots(e.payload) for e in events}
    wanted = {sha for shas in named.values() for sha in shas}
    stored: set[str] = set()
    if wanted:
        query = select(Snapshot.sha256).where(Snapshot.case_no == case_no, Snapshot.sha256.in_(wanted))
        stored = set(session.scalars(query))
    missing = {e.id: [sha for sha in named[e.id] if sha not in stored] for e in events}
    lost = _not_stored_by_seal(session, case_no, [e for e in events if missing[e.id]])
    return [
        EventRow(
            event=e,
            shots=[sha for sha in named[e.id] if sha in stored] if pictures else [],
            pending=sum(1 for sha in missing[e.id] if sha not in lost.get(e.id, ())),
            not_stored=sum(1 for sha in missing[e.id] if sha in lost.get(e.id, ())),
            named=len(named[e.id]),
            summary=summary(e.payload),
        )
        for e in events
    ]


def _not_stored_by_seal(session: Session, case_no: str, events: list[Event]) -> dict[int, set[str]]:
    """For each trigger event (``intrusion``, ``tamper``) whose pictures have not all arrived: those its signed
    follow-up, the ``snapshot_taken`` naming its ``seq``, says the seal could not store (``not_stored``): they are not
    on their way, and are shown as such rather than as "not arrived yet"."""
    triggers = {(e.device_id, e.seq): e.id for e in events if e.type in _TRIGGER_TYPES}
    if not triggers:
        return {}
    query = select(Event.device_id, Event.payload).where(
        Event.case_no == case_no,
        Event.type == EventType.SNAPSHOT_TAKEN.value,
        Event.device_id.in_({device for device, _seq in triggers}),
        Event.seq > min(seq for _device, seq in triggers),
    )
    found: dict[int, set[str]] = {}
    for device_id, payload in session.execute(query.order_by(Event.seq).limit(FOLLOW_UPS_MAX)):
        seq = payload.get("trigger_seq") if isinstance(payload, dict) else None
        listed = payload.get("not_stored") if isinstance(payload, dict) else None
        if not isinstance(seq, int) or isinstance(seq, bool) or not isinstance(listed, list):
            continue  # a signed event is data: a malformed one names nothing
        event_id = triggers.get((device_id, seq))
        if event_id is None:
            continue
        shas = {item.get("sha256") for item in listed if isinstance(item, dict)}
        found.setdefault(event_id, set()).update(sha for sha in shas if isinstance(sha, str))
    return found


def summary(payload: dict[str, Any]) -> list[tuple[str, str]]:
    """The payload's fields of :data:`SUMMARY_FIELDS` that hold a plain value, as text."""
    shown = []
    for name in SUMMARY_FIELDS:
        value = payload.get(name)
        if isinstance(value, bool):
            shown.append((name, "true" if value else "false"))
        elif name == "step_ms" and type(value) is int:
            shown.append((name, step_words(value)))
        elif isinstance(value, (str, int)):
            shown.append((name, str(value)[:80]))
    return shown


def _named_snapshots(payload: dict[str, Any]) -> list[str]:
    listed = payload.get("snapshots")
    if not isinstance(listed, list):
        return []
    return [sha for sha in listed if isinstance(sha, str) and len(sha) == 64][:32]


def alarm_cards(session: Session, user: User, case_no: str) -> list[AlarmCard]:
    """The case's live alarms (open first), then its last closed ones; none for roles that may not read alarms."""
    if not access.has_permission(user, Permission.ALARM_READ):
        return []
    alarms: list[Alarm] = []
    for state in LIVE_STATES:  # open first, newest first; the limit after the order
        if len(alarms) < LIVE_ALARMS:
            live = select(Alarm).where(Alarm.case_no == case_no, Alarm.state == state).order_by(Alarm.id.desc())
            alarms += session.scalars(live.limit(LIVE_ALARMS - len(alarms)))
    closed = select(Alarm).where(Alarm.case_no == case_no, Alarm.state == AlarmState.CLOSED.value)
    alarms += list(session.scalars(closed.order_by(Alarm.id.desc()).limit(CLOSED_ALARMS)))
    query = select(Seal.device_id, Seal.location).where(Seal.case_no == case_no)
    places: dict[str, str] = {row.device_id: row.location for row in session.execute(query)}
    names = usernames_by_id(session, {a.acknowledged_by for a in alarms} | {a.closed_by for a in alarms})
    may_ack = access.has_permission(user, Permission.ALARM_ACK)
    may_close = access.has_permission(user, Permission.ALARM_CLOSE)
    return [
        AlarmCard(
            alarm=a,
            location=places.get(a.device_id, ""),
            acknowledged_by=names.get(a.acknowledged_by) if a.acknowledged_by is not None else None,
            closed_by=names.get(a.closed_by) if a.closed_by is not None else None,
            can_ack=may_ack and a.state == AlarmState.OPEN.value,
            can_close=may_close and a.state != AlarmState.CLOSED.value,
        )
        for a in alarms
    ]


def live_alarm_count(session: Session, user: User, case_no: str) -> int:
    """How many live alarms the case has (the page lists at most :data:`LIVE_ALARMS`); 0 for roles without alarms."""
    if not access.has_permission(user, Permission.ALARM_READ):
        return 0
    query = select(func.count(Alarm.id)).where(Alarm.case_no == case_no, Alarm.state.in_(LIVE_STATES))
    return session.scalar(query) or 0


def command_rows(session: Session, user: User, case_no: str) -> list[CommandRow]:
    """The latest commands sent to the case's seals (those of the removal's disarms too), newest first; none for a
    reader who may not see the seals' connection (the API's ``seal:status``)."""
    if not access.has_permission(user, Permission.SEAL_STATUS):
        return []
    query = select(CourtCommand).where(CourtCommand.case_no == case_no).order_by(CourtCommand.id.desc())
    commands = list(session.scalars(query.limit(RECENT_COMMANDS)))
    names = usernames_by_id(session, {c.issued_by for c in commands})
    return [CommandRow(c, names.get(c.issued_by)) for c in commands]
