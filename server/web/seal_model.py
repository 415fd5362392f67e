"""What the seal page (``/seals/{device_id}``) shows, read with the user's access checks: the seal's health from its
latest heartbeat (docs/protocol.md: outbox depth, pictures waiting, disk, camera, PIR, lid switch, speaker, armed),
its connection history, its bindings and its latest events — of the cases the user may see only, as the API's
``GET /api/seals/{id}/events`` and ``…/bindings`` show them.

The court keeps no table of status changes: ``seals.status``/``status_changed_at`` hold the last one. The history is
put together from what is stored: that last status, the seal's ``agent_started`` events (each start of its agent,
with its version and the events it still held) and its ``offline`` alarms (raised after the grace, closed when it
was heard again).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from seal_protocol import EventType
from server.alarms.models import Alarm
from server.alarms.state import AlarmKind
from server.auth import access
from server.auth.access import Permission
from server.auth.models import User
from server.auth.users import usernames_by_id
from server.evidence.models import Event
from server.seals.models import Seal, SealBinding
from server.seals.registry import seal_bindings

#: The heartbeat's fields as the page shows them, in this order (docs/protocol.md, the heartbeat row).
HEALTH_FIELDS = (
    "outbox_depth",
    "snapshots_pending",
    "disk_free_bytes",
    "camera",
    "camera_reason",  # only with camera "unavailable": why the seal cannot use its configured camera
    "pir_state",
    "tamper",
    "speaker",
    "clock",  # {"synced", "max_error_ms"}: shown as two items (seals from before it sent none)
    "armed",
    "uptime_s",
    "agent_version",
)
#: The values of the heartbeat's fields that have words (``seal_value.<field>_<value>`` in the catalogue).
HEARTBEAT_WORDS: dict[str, tuple[str, ...]] = {
    "camera": ("none", "unavailable", "starting", "ok", "frozen", "uniform", "blind", "lost"),
    "pir_state": ("motion", "idle"),
    "tamper": ("open", "closed", "none"),
    "speaker": ("untested", "ok", "failed"),
    "clock": ("synced", "unsynced", "unknown"),
    "armed": ("true", "false"),
}
#: Values that need a person's attention.
BAD_VALUES = {
    "camera": {"unavailable", "frozen", "uniform", "blind", "lost"},
    "tamper": {"open"},
    "speaker": {"failed"},
}
#: An outbox this deep means events are waiting for the court's receipts.
DEEP_OUTBOX = 100
LOW_DISK_BYTES = 200 * 1024 * 1024
HISTORY = 50
RECENT_EVENTS = 30


@dataclass(frozen=True)
class HealthItem:
    field: str
    value: str
    worded: bool  # the catalogue has words for it: seal_value.<field>_<value>
    bad: bool


@dataclass(frozen=True)
class ConnectionLine:
    at: datetime
    kind: str  # "status", "started", "offline_alarm", "back"
    detail: str


@dataclass(frozen=True)
class BindingLine:
    binding: SealBinding
    bound_by: str | None
    unbound_by: str | None


def health(session: Session, user: User, seal: Seal) -> tuple[Event | None, list[HealthItem]]:
    """The seal's latest heartbeat (of a case the user sees) and its fields; none for roles without ``EVENT_READ``."""
    if not access.has_permission(user, Permission.EVENT_READ):
        return None, []
    query = select(Event).where(
        Event.device_id == seal.device_id,
        Event.type == EventType.HEARTBEAT.value,
        access.case_filter(session, user, Event.case_no),
    )
    heartbeat = session.scalars(query.order_by(Event.id.desc()).limit(1)).first()
    if heartbeat is None:
        return None, []
    items = []
    for name in HEALTH_FIELDS:
        if name in heartbeat.payload:
            raw = heartbeat.payload[name]
            items += _clock_items(raw) if name == "clock" else [_item(name, raw)]
    return heartbeat, items


def _clock_items(raw: Any) -> list[HealthItem]:
    """The heartbeat's ``clock``: synchronised, not (its ``ts`` is the seal's unsynchronised clock) or unknown (it
    could not be read), and the kernel's bound on its error when synchronised (unsynchronised, the kernel's bound
    stops at 16 s and says nothing of a clock that booted days behind)."""
    synced = raw.get("synced") if isinstance(raw, dict) else None
    value = "synced" if synced is True else "unsynced" if synced is False else "unknown"
    items = [HealthItem("clock", value, True, value != "synced")]
    bound = raw.get("max_error_ms") if isinstance(raw, dict) else None
    if value == "synced" and type(bound) is int:
        items.append(HealthItem("clock_max_error_ms", f"{bound} ms", False, False))
    return items


def _item(name: str, raw: Any) -> HealthItem:
    value = ("true" if raw else "false") if isinstance(raw, bool) else str(raw)[:64]
    bad = value in BAD_VALUES.get(name, set())
    if name == "outbox_depth" and isinstance(raw, int) and raw >= DEEP_OUTBOX:
        bad = True
    if name == "disk_free_bytes" and isinstance(raw, int) and raw < LOW_DISK_BYTES:
        bad = True
    return HealthItem(name, value, value in HEARTBEAT_WORDS.get(name, ()), bad)


def connection_history(session: Session, user: User, seal: Seal) -> list[ConnectionLine]:
    """Newest first: the seal's last reported status, its agent's starts and its offline alarms."""
    lines = []
    if seal.status is not None and seal.status_changed_at is not None:
        lines.append(ConnectionLine(seal.status_changed_at, "status", seal.status))
    if access.has_permission(user, Permission.EVENT_READ):
        query = select(Event).where(
            Event.device_id == seal.device_id,
            Event.type == EventType.AGENT_STARTED.value,
            access.case_filter(session, user, Event.case_no),
        )
        for started in session.scalars(query.order_by(Event.id.desc()).limit(HISTORY)):
            version, depth = started.payload.get("agent_version", "?"), started.payload.get("outbox_depth", "?")
            lines.append(ConnectionLine(started.ts, "started", f"{str(version)[:64]} · {str(depth)[:64]}"))
    if access.has_permission(user, Permission.ALARM_READ):
        alarms = select(Alarm).where(
            Alarm.device_id == seal.device_id,
            Alarm.kind == AlarmKind.OFFLINE.value,
            access.case_filter(session, user, Alarm.case_no),
        )
        for alarm in session.scalars(alarms.order_by(Alarm.id.desc()).limit(HISTORY)):
            lines.append(ConnectionLine(alarm.opened_at, "offline_alarm", alarm.case_no))
            if alarm.closed_at is not None:
                lines.append(ConnectionLine(alarm.closed_at, "back", alarm.closed_note or ""))
    return sorted(lines, key=lambda line: line.at, reverse=True)[:HISTORY]


def binding_lines(session: Session, user: User, seal: Seal) -> list[BindingLine]:
    """The seal's bindings to the cases the user may see, newest first."""
    visible = access.visible_case_nos(session, user)
    rows = [b for b in seal_bindings(session, device_id=seal.device_id) if visible is None or b.case_no in visible]
    names = usernames_by_id(session, {b.bound_by for b in rows} | {b.unbound_by for b in rows})
    return [
        BindingLine(
            b,
            names.get(b.bound_by) if b.bound_by is not None else None,
            names.get(b.unbound_by) if b.unbound_by is not None else None,
        )
        for b in rows
    ]


def recent_events(session: Session, user: User, seal: Seal) -> list[Event]:
    """The seal's latest events (heartbeats too) in the cases the user may see."""
    if not access.has_permission(user, Permission.EVENT_READ):
        return []
    query = select(Event).where(Event.device_id == seal.device_id, access.case_filter(session, user, Event.case_no))
    return list(session.scalars(query.order_by(Event.id.desc()).limit(RECENT_EVENTS)))
