"""What a case's evidence bundle holds, read from the database: the case, its seals, its events (the stored bytes),
the snapshots they name, and the case's alarms, commands and removal requests (``docs/evidence.md``).

Pure reads in the caller's session; the files (snapshots, proofs) are named here and read by the writer.
"""

from __future__ import annotations

import base64
from array import array
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from seal_protocol import utc_now_ms
from server.alarms.models import Alarm
from server.audit.models import AuditEntry
from server.auth.models import User
from server.commands.models import CourtCommand
from server.evidence import log
from server.evidence.models import Event, LogLeaf
from server.export.event_source import EventSource
from server.export.pictures import snapshot_records
from server.export.quarantine_summary import quarantine_summary
from server.removal.models import RemovalRequest
from server.seals.models import Case, Seal, SealBinding

JsonDict = dict[str, Any]


def _to_ms(moment: datetime | None) -> datetime | None:
    return None if moment is None else moment.replace(microsecond=moment.microsecond // 1000 * 1000)


@dataclass(frozen=True)
class TimeRange:
    """Events whose ``ts`` (the seal's clock) lies in ``[start, end]`` (``None``: open on that side), with the events
    inside each seal's chain between them. Both bounds are cut to the millisecond, as the bundle states them
    (``range``) and as the seals stamp events: a bound of ``…00.000400`` would leave out the event of ``…00.000``
    that the stated range holds."""

    start: datetime | None = None
    end: datetime | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "start", _to_ms(self.start))
        object.__setattr__(self, "end", _to_ms(self.end))

    def as_json(self) -> JsonDict:
        return {"from": ts(self.start), "to": ts(self.end)}


#: Every event, whenever it happened.
ALL_TIME = TimeRange()


@dataclass
class AuditLine:
    record: bytes  # the entry's leaf bytes exactly
    audit_id: int
    leaf_index: int

    def meta(self) -> JsonDict:
        return {"audit_id": self.audit_id, "leaf_index": self.leaf_index}


@dataclass
class CaseEvidence:
    """Everything of one case that goes into its bundle, in the bundle's order."""

    case_no: str
    case: JsonDict
    seals: dict[str, JsonDict]
    #: Streamed from the database at each pass, never held (a case may have a million).
    events: EventSource
    snapshots: list[JsonDict]
    alarms: list[JsonDict] = field(default_factory=list)
    commands: list[JsonDict] = field(default_factory=list)
    removal: list[JsonDict] = field(default_factory=list)
    audit: list[AuditLine] = field(default_factory=list)
    #: The bytes of pictures the court refused (quarantined) that hash to their names, by SHA-256.
    refused: dict[str, bytes] = field(default_factory=dict)
    #: What the ingest refused of the case's seals while bound to it (``quarantine.jsonl``).
    quarantine: list[JsonDict] = field(default_factory=list)

    def leaf_indices(self) -> array[int]:
        """The leaves the bundle proves: its events', then its audit entries' (the order of log/proofs.jsonl)."""
        indices = self.events.leaf_indices()
        indices.extend(line.leaf_index for line in self.audit)
        return indices


def ts(moment: datetime | None) -> str | None:
    return None if moment is None else utc_now_ms(moment)


def case_leaves(session: Session, case_no: str) -> list[int]:
    """The last leaf of the case's events and audit entries in the log (none: an empty list), for choosing the
    checkpoint."""
    last_event = select(func.max(LogLeaf.leaf_index)).join(Event, LogLeaf.event_id == Event.id)
    last_entry = select(func.max(LogLeaf.leaf_index)).join(AuditEntry, LogLeaf.audit_id == AuditEntry.id)
    found = [
        index
        for index in (
            session.scalar(last_event.where(Event.case_no == case_no)),
            session.scalar(last_entry.where(AuditEntry.case_no == case_no)),
        )
        if index is not None
    ]
    return [max(found)] if found else []


def gather(session: Session, case: Case, time_range: TimeRange, *, below: int) -> CaseEvidence:
    """The evidence of ``case`` in ``time_range`` whose leaves are below ``below`` (the checkpoint's tree size), as
    the bundle lists it."""
    names = _usernames(session)
    events = EventSource(session, case.case_no, time_range.start, time_range.end, below)
    snapshots, refused = snapshot_records(session, case.case_no, events)
    device_ids = sorted(events.device_ids() | _bound_devices(session, case.case_no))
    return CaseEvidence(
        case_no=case.case_no,
        case=_case_record(case),
        seals={d: _seal_record(session, d, case.case_no, names) for d in device_ids},
        events=events,
        snapshots=snapshots,
        refused=refused,
        quarantine=quarantine_summary(session, case.case_no, device_ids, time_range.start, time_range.end),
        alarms=_alarms(session, case.case_no, names),
        commands=_commands(session, case.case_no, names),
        removal=_removal(session, case.case_no, names),
        audit=_audit(session, case.case_no, time_range, below),
    )


def _usernames(session: Session) -> dict[int, str]:
    return {row.id: row.username for row in session.execute(select(User.id, User.username))}


def _audit(session: Session, case_no: str, time_range: TimeRange, below: int) -> list[AuditLine]:
    """The case's audit entries (those whose ``at`` lies in the range) with their leaves, by leaf index."""
    return [
        AuditLine(entry.record, entry.id, leaf.leaf_index)
        for entry, leaf in log.audit_leaves_of_case(session, case_no)
        if leaf.leaf_index < below
        and (time_range.start is None or entry.at >= time_range.start)
        and (time_range.end is None or entry.at <= time_range.end)
    ]


def _bound_devices(session: Session, case_no: str) -> set[str]:
    bound = select(SealBinding.device_id).where(SealBinding.case_no == case_no)
    now = select(Seal.device_id).where(Seal.case_no == case_no)
    return set(session.scalars(bound)) | set(session.scalars(now))


def _case_record(case: Case) -> JsonDict:
    court = case.court_row
    return {
        "address": case.address,
        "applicant": case.applicant,
        "case_no": case.case_no,
        "court_code": case.court_code,
        "court_name": court.name if court is not None else None,
        "created_at": ts(case.created_at),
        "debtor": case.debtor,
        "judge": case.judge,
        "judge_phone": case.judge_phone,
        "sealed_property": case.sealed_property,
        "seizure_expires_on": case.seizure_expires_on.isoformat() if case.seizure_expires_on else None,
        "status": case.status,
        "status_changed_at": ts(case.status_changed_at),
    }


def _seal_record(session: Session, device_id: str, case_no: str, names: dict[int, str]) -> JsonDict:
    seal = session.scalars(select(Seal).where(Seal.device_id == device_id)).one()
    bindings = session.scalars(
        select(SealBinding)
        .where(SealBinding.device_id == device_id, SealBinding.case_no == case_no)
        .order_by(SealBinding.id)
    )
    enrolments = session.scalars(
        select(AuditEntry)
        .where(AuditEntry.action == "seal.register", AuditEntry.target == device_id)
        .order_by(AuditEntry.id)
    )
    return {
        "bindings": [
            {
                "bound_at": ts(b.bound_at),
                "bound_by": _name(names, b.bound_by),
                "unbound_at": ts(b.unbound_at),
                "unbound_by": _name(names, b.unbound_by),
            }
            for b in bindings
        ],
        "device_id": device_id,
        "enrolment": [
            {
                "actor": e.actor,
                "at": ts(e.at),
                # A registration that bound the seal to another case: that case is not this bundle's to name.
                "case_no": case_no if e.details.get("case_no") == case_no else None,
                "public_key": e.details.get("public_key"),
            }
            for e in enrolments
        ],
        "location": _location_in_case(session, seal, case_no),
        "public_key": seal.public_key,
        "registered_at": ts(seal.registered_at),
    }


def _location_in_case(session: Session, seal: Seal, case_no: str) -> str:
    """Where the seal stood for ``case_no``: its place now while it guards the case, else the place its last binding
    to the case recorded (``seal.bind``; "" if none did) — never where it stands for another case since."""
    if seal.case_no == case_no:
        return seal.location
    query = select(AuditEntry.details).where(
        AuditEntry.action == "seal.bind", AuditEntry.target == seal.device_id, AuditEntry.case_no == case_no
    )
    details = session.scalars(query.order_by(AuditEntry.id.desc()).limit(1)).first()
    location = details.get("location") if isinstance(details, dict) else None
    return location if isinstance(location, str) else ""


def _name(names: dict[int, str], user_id: int | None) -> str | None:
    return None if user_id is None else names.get(user_id, f"#{user_id}")


def _event_ref(event: Event | None) -> JsonDict | None:
    return None if event is None else {"device_id": event.device_id, "seq": event.seq}


def _alarms(session: Session, case_no: str, names: dict[int, str]) -> list[JsonDict]:
    rows = session.scalars(select(Alarm).where(Alarm.case_no == case_no).order_by(Alarm.id))
    return [
        {
            "acknowledged_at": ts(a.acknowledged_at),
            "acknowledged_by": _name(names, a.acknowledged_by),
            "acknowledged_note": a.acknowledged_note,
            "closed_at": ts(a.closed_at),
            "closed_by": _name(names, a.closed_by),
            "closed_note": a.closed_note,
            "count": a.count,
            "details": a.details,
            "device_id": a.device_id,
            "first_event": _event_ref(a.first_event),
            "id": a.id,
            "kind": a.kind,
            "last_event": _event_ref(a.last_event),
            "last_seen_at": ts(a.last_seen_at),
            "opened_at": ts(a.opened_at),
            "severity": a.severity,
            "state": a.state,
        }
        for a in rows
    ]


def _commands(session: Session, case_no: str, names: dict[int, str]) -> list[JsonDict]:
    rows = session.scalars(select(CourtCommand).where(CourtCommand.case_no == case_no).order_by(CourtCommand.id))
    return [
        {
            "action": c.action,
            "answer_seq": c.answer_seq,
            "answered_at": ts(c.answered_at),
            "args": c.args,
            "device_id": c.device_id,
            "expires_at": ts(c.expires_at),
            "id": c.id,
            "issued_at": ts(c.issued_at),
            "issued_by": _name(names, c.issued_by),
            "reason": c.reason,
            "result": c.result,
            "signed": base64.b64encode(c.signed).decode("ascii") if c.signed else None,
            "state": c.state,
        }
        for c in rows
    ]


def _removal(session: Session, case_no: str, names: dict[int, str]) -> list[JsonDict]:
    rows = session.scalars(select(RemovalRequest).where(RemovalRequest.case_no == case_no).order_by(RemovalRequest.id))
    return [_removal_record(r, names) for r in rows]


def _removal_record(r: RemovalRequest, names: dict[int, str]) -> JsonDict:
    return {
        "decided_at": ts(r.decided_at),
        "decided_by": _name(names, r.decided_by),
        "decision_reasons": r.decision_reasons,
        "disarmed_at": ts(r.disarmed_at),
        "disarms": [{"command_id": d.command_id, "device_id": d.device_id} for d in r.disarms],
        "filed_at": ts(r.filed_at),
        "filed_by": _name(names, r.filed_by),
        "ground": r.ground,
        "id": r.id,
        "lifted_at": ts(r.lifted_at),
        "lifted_by": _name(names, r.lifted_by),
        "proofs": [
            {
                "filename": p.filename,
                "media_type": p.media_type,
                "sha256": p.sha256,
                "size": p.size,
                "uploaded_at": ts(p.uploaded_at),
            }
            for p in r.proofs
        ],
        "state": r.state,
        "statement": r.statement,
        "steps": [
            {
                "action": s.action,
                "actor": s.actor,
                "at": ts(s.at),
                "from_state": s.from_state,
                "note": s.note,
                "to_state": s.to_state,
            }
            for s in r.steps
        ],
        "views": [{"at": ts(v.at), "author": _name(names, v.author_id), "text": v.text} for v in r.views],
        "waivers": [
            {
                "decided_at": ts(w.decided_at),
                "decided_by": _name(names, w.decided_by),
                "device_id": w.device_id,
                "found": w.found,
                "reasons": w.reasons,
            }
            for w in r.waivers
        ],
    }
