"""What the evidence report states, gathered by the export (:mod:`server.export`) and set by
:func:`server.export.report.render_report`: plain values, no database rows, so the report is a pure function of them.

Times are aware datetimes (UTC or any zone; the report prints them as China time). Actors are the names the audit
log records (a user's login, ``system``, a CLI's OS user).
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from seal_verify.verdict import KeyUse
from server.export.event_summary import EventFacts, EventSummary


@dataclass(frozen=True)
class Binding:
    """A time the seal was bound to this case, and when it was unbound (``None``: still bound)."""

    bound_at: datetime
    bound_by: str
    unbound_at: datetime | None = None
    unbound_by: str | None = None


@dataclass(frozen=True)
class Enrolment:
    """One registration of the seal (``seals/<id>.json`` ``enrolment``): when, by whom, which key; ``in_case``: it
    bound the seal to this case (then the bundle's audit log holds it), else to another case."""

    at: datetime
    actor: str
    public_key_b64: str
    in_case: bool


@dataclass(frozen=True)
class SealFacts:
    """One seal of the case: its enrolled key (base64, as enrolled), its enrolment record and bindings; ``signed``
    the keys that signed its events in the bundle, per registration period (seal-verify's ``signing_keys``)."""

    device_id: str
    public_key_b64: str
    registered_at: datetime
    registered_by: str
    location: str
    bindings: Sequence[Binding] = ()
    enrolment: Sequence[Enrolment] = ()
    signed: Sequence[KeyUse] = ()


@dataclass(frozen=True)
class SnapshotFacts:
    """A snapshot an event of the case names; ``jpeg`` the bytes as stored (``b""`` for one the report does not draw:
    an export reads only the thumbnails' bytes), ``None`` if the court does not hold it."""

    sha256: str
    device_id: str
    received_at: datetime | None
    jpeg: bytes | None
    #: Why the court does not hold it (``snapshots.jsonl``'s ``absent_reason``: ``not_stored_by_seal``,
    #: ``lost_on_seal``, ``not_received``, ``refused_by_court``, ``lost``); ``None`` if it does, or the bundle says
    #: nothing.
    absent_reason: str | None = None
    #: The seal's signed statements that it could not store it: ``{"device_id", "reason", "seq"}`` each.
    not_stored: Sequence[Mapping[str, Any]] = ()
    #: The copies the court received on its topic and refused (``snapshots.jsonl``'s ``refused``): ``{"copies",
    #: "device_id", "kept", "reason", "received_at", "sha256", "size"}`` each.
    refused: Sequence[Mapping[str, Any]] = ()
    #: The seal's signed statements that it lost it (``snapshot_lost``): ``{"device_id", "kept", "reason", "seq"}``
    #: each.
    snapshot_lost: Sequence[Mapping[str, Any]] = ()

    @property
    def path(self) -> str:
        return f"snapshots/{self.sha256}.jpg"


@dataclass(frozen=True)
class HistoryEntry:
    """One step of an alarm's or a removal request's history: when, who, what (e.g. ``acknowledged``), the note."""

    at: datetime
    actor: str
    action: str
    note: str | None = None


@dataclass(frozen=True)
class ReportTiming:
    """How an occurrence of an alarm was reported, when its ``ts`` (the seal's clock) lies past
    :data:`~server.alarms.event_details.DELIVERED_LATE_AFTER` from the court's receipt: ``delayed_s`` (a delayed
    report, the seal's clock synchronised by its own word) or ``clock_gap_s`` (received − ``ts``; the time is in
    doubt: the seal had said its clock was not synchronised, ``clock_synced`` False, or nothing, None)."""

    ts: str | None
    seq: int | None = None
    delayed_s: int | None = None
    clock_gap_s: int | None = None
    clock_synced: bool | None = None


@dataclass(frozen=True)
class AlarmFacts:
    id: int
    device_id: str
    kind: str
    severity: str
    state: str
    opened_at: datetime
    count: int
    history: Sequence[HistoryEntry] = ()
    #: Raised by an event a simulated seal signed (its ``details``, the payload, say ``"simulated": true``).
    simulated: bool = False
    #: Its latest occurrence (the details' own marks), if it was a delayed report or its time is in doubt.
    report: ReportTiming | None = None
    #: Its opening occurrence (the details' ``opening``), kept when a repeat folded in, if delayed or in doubt.
    opening: ReportTiming | None = None


@dataclass(frozen=True)
class CommandFacts:
    """A command sent to a seal of the case, and the seal's answer (``answer_seq``: the answering event's seq):
    ``answer`` the result it reported having carried the command out, ``reason`` the token it refused it with
    (:class:`seal_protocol.commands.RejectReason`)."""

    id: int
    device_id: str
    action: str
    issued_by: str
    issued_at: datetime
    state: str
    answer_seq: int | None = None
    answer: str | None = None
    reason: str | None = None
    #: The SHA-256 (hex) of the bytes the court signed and published as the command.
    signed_sha256: str | None = None
    #: The refusal (``reason``) is of these very bytes, which the seal could not verify or read
    #: (:func:`server.commands.refusals.refused_own_bytes`): the court's own command, not a forged one.
    refused_own_bytes: bool = False


@dataclass(frozen=True)
class RemovalFacts:
    """A removal request (解除查封申请) with its history; ``proofs``: the sha256 of each proof file."""

    id: int
    ground: str
    state: str
    filed_by: str
    filed_at: datetime
    history: Sequence[HistoryEntry] = ()
    proofs: Sequence[str] = ()


@dataclass(frozen=True)
class OfflinePeriod:
    """A time the court heard nothing from a seal (``until`` ``None``: not heard from again before the export)."""

    device_id: str
    since: datetime
    until: datetime | None


@dataclass(frozen=True)
class CheckpointFacts:
    """The signed checkpoint every proof in the bundle leads to, and the log's verifier key."""

    origin: str
    size: int
    root_hex: str
    log_key: str

    @property
    def root_b64(self) -> str:
        """The root as ``log/checkpoint.txt`` spells it (base64, as C2SP checkpoints do): a reader compares by eye."""
        return base64.b64encode(bytes.fromhex(self.root_hex)).decode("ascii")


@dataclass(frozen=True)
class TimestampFacts:
    """The RFC 3161 time stamp over the checkpoint: the TSA's time and its name."""

    gen_time: datetime
    tsa_name: str


@dataclass(frozen=True)
class Check:
    """One verification check: its name in Chinese and English, ``ok`` (``None``: not applicable here), detail;
    ``warning``: it did not fail, but seal-verify warns of it (a seal's chain that may be truncated, an unpinned time
    stamp)."""

    zh: str
    en: str
    ok: bool | None
    detail: str = ""
    warning: bool = False


@dataclass(frozen=True)
class ExportFacts:
    """Who exported the bundle, when, and which range of time (``None`` ends: open)."""

    by: str
    at: datetime
    range_from: datetime | None = None
    range_to: datetime | None = None


@dataclass(frozen=True)
class ReportFacts:
    """Everything the report states about one case's evidence bundle."""

    court: str
    case_no: str
    export: ExportFacts
    checkpoint: CheckpointFacts
    timestamp: TimestampFacts | None = None
    checks: Sequence[Check] = ()
    seals: Sequence[SealFacts] = ()
    events: Sequence[EventFacts] = ()
    snapshots: Sequence[SnapshotFacts] = ()
    alarms: Sequence[AlarmFacts] = ()
    commands: Sequence[CommandFacts] = ()
    removals: Sequence[RemovalFacts] = ()
    offline: Sequence[OfflinePeriod] = ()
    audit_count: int = 0
    #: What the court refused of the case's seals while bound to it (``quarantine.jsonl``), per seal and reason.
    quarantine: Sequence[Mapping[str, Any]] = ()
    #: What the report states of the events, gathered as they streamed (an export: ``events`` is then empty and
    #: ``offline`` already found); ``None``: gathered from ``events``.
    summary: EventSummary | None = None


def offline_periods(events: Sequence[EventFacts], *, silence: timedelta, until: datetime) -> list[OfflinePeriod]:
    """The periods longer than ``silence`` in which the court received nothing from a seal, by receipt time, up to
    ``until`` (the export's time): what the export gives the report when it has no better record."""
    receipts = sorted((e.device_id, e.received_at) for e in events)
    return silences(receipts, silence=silence, until=until)


def silences(receipts: Iterable[tuple[str, datetime]], *, silence: timedelta, until: datetime) -> list[OfflinePeriod]:
    """:func:`offline_periods` of the times of receipt ``receipts`` (device id, received at), sorted by seal and
    time (an export streams them so from the database)."""
    last: dict[str, datetime] = {}
    periods: list[OfflinePeriod] = []
    for device_id, received_at in receipts:
        seen = last.get(device_id)
        if seen is not None and received_at - seen > silence:
            periods.append(OfflinePeriod(device_id, seen, received_at))
        last[device_id] = received_at
    for device_id, seen in last.items():
        if until - seen > silence:
            periods.append(OfflinePeriod(device_id, seen, None))
    return sorted(periods, key=lambda p: (p.since, p.device_id))
