"""The rows an ingest batch writes with Core statements: its events (:class:`~server.core.bulk_insert.BulkInsert`,
their ids by event id), and what they change in the seals' rows (last seen, armed, status,
:class:`~server.core.bulk_update.BulkUpdate`), one statement each for any number of rows. Compiled once.

Lock order: every transaction of the ingest locks the rows it shares with other workers in one order — chain states
(sorted by ``device_id``; those of seals heard of for the first time are made in their place in that order, by the
statement that locks the others: :meth:`~server.ingest.chain.ChainBook.load`), then live alarms (by id,
:class:`server.alarms.book.AlarmBook`, as the liveness check does; a condition's alarm opened meanwhile is
looked for again under the seal's row, locked without waiting), then seal rows (sorted by ``device_id``, all at
once before they are written, or before the batch's alarms are settled if it has statuses, which stand only against
the rows locked: :mod:`server.ingest.statuses`, the live alarms locked just before; with them the rows of the seals
whose pictures it files or whose events name pictures, written or not, before their snapshots' rows:
:mod:`server.ingest.snapshot_filing`), then the commands its answers
settle (by id, :meth:`~server.ingest.batch.IngestBatch.apply`), then quarantine rows (sorted by key,
:mod:`server.ingest.quarantine_rows`), then the log's writer lock — so two workers cannot deadlock.

The web's and the command line's writers keep that order where they share rows with it: a case's row (locked
first, by whatever changes its seals; a seal that moves changes two cases, locked by ``case_no``), then seal rows
(by ``device_id``), then their commands (by id), notices, and the log's lock at the commit
(:mod:`server.audit.service`); an alarm's acknowledgement or closing locks that alarm alone, and the command
dispatcher locks each command it publishes alone, until the MQTT client has it
(:func:`~server.commands.service.claim_for_publish`). Case and seal rows
are locked ``FOR NO KEY UPDATE`` (:data:`server.core.db.NO_KEY_UPDATE`): the ingest's inserts of events, alarms
and snapshots take key-share locks on their case's and seal's rows (the foreign keys' checks), which ``FOR UPDATE``
would wait for. docs/deploy.md lists the writers and their locks."""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

from sqlalchemy import ColumnElement, Table, and_, bindparam, case, literal_column, or_, select, tuple_
from sqlalchemy.orm import Session

from seal_protocol.envelope import parse_ts
from seal_protocol.status import StorageReport
from server.core.bulk_insert import BulkInsert
from server.core.bulk_update import BulkUpdate, Values
from server.core.driver_sql import DriverSelect
from server.core.value_lists import one_of
from server.evidence.models import Event
from server.seals.models import Seal

_EVENTS = cast(Table, Event.__table__)
_SEALS = cast(Table, Seal.__table__)
_STORED = (_EVENTS.c.device_id, _EVENTS.c.seq, _EVENTS.c.event_id, _EVENTS.c.prev_hash, _EVENTS.c.raw)
#: Stored events with one of some event ids; stored events at some (device_id, seq) pairs (rare: expanding is fine).
SAME_ID = DriverSelect(select(*_STORED).where(one_of(_EVENTS.c.event_id, "event_ids")))
NEAR = select(*_STORED).where(tuple_(_EVENTS.c.device_id, _EVENTS.c.seq).in_(bindparam("pairs", expanding=True)))
#: Locks the seal rows a batch is about to write, in ``device_id`` order (``NO KEY UPDATE``: rows referring to a seal
#: may still be inserted meanwhile), and reads their statuses (:meth:`SealChanges.lock`).
_LOCK_SEALS = (
    select(_SEALS.c.device_id, _SEALS.c.status, _SEALS.c.status_ts)
    .where(one_of(_SEALS.c.device_id, "device_ids"))
    .order_by(_SEALS.c.device_id)
    .with_for_update(key_share=True)
)
#: One fixed statement for any number of rows, the ids returned by event id (unique): :mod:`server.core.bulk_insert`.
_INSERT_EVENTS = BulkInsert(_EVENTS, [c.name for c in _EVENTS.c if c.name != "id"], ids_by="event_id")
_SEAL_CHANGE_TYPES = {
    "device_id": _SEALS.c.device_id.type,
    "seen_at": _SEALS.c.last_seen_at.type,
    "armed": _SEALS.c.armed.type,
    "armed_at": _SEALS.c.armed_at.type,
    "armed_seq": _SEALS.c.armed_seq.type,
    "armed_case": _SEALS.c.case_no.type,
    "status": _SEALS.c.status.type,
    "status_at": _SEALS.c.status_changed_at.type,
    "status_ts": _SEALS.c.status_ts.type,
    "storage_fault": _SEALS.c.storage_fault.type,  # None: unchanged; "": cleared (the seal stores again)
    "storage_held": _SEALS.c.storage_held.type,
    "storage_since": _SEALS.c.storage_since.type,
}


def _seal_conditions(v: Values) -> tuple[ColumnElement[bool], ColumnElement[bool], ColumnElement[bool]]:
    """When each of a seal's changes applies: only forward, since with shared workers an event or a status received
    earlier may commit after a later one, and another transaction may have stored a newer armed state."""
    seals = _SEALS.c
    seen = and_(v["seen_at"].is_not(None), or_(seals.last_seen_at.is_(None), seals.last_seen_at <= v["seen_at"]))
    # The armed state only from an event filed under the case the seal is bound to now (checked against the row as
    # locked: a rebinding committed meanwhile cleared it, and an event of the case it left must not set it again).
    newer_seq = or_(seals.armed_seq.is_(None), seals.armed_seq < v["armed_seq"])
    armed = and_(v["armed_seq"].is_not(None), seals.case_no == v["armed_case"], newer_seq)
    # A status applies if it supersedes the stored one (seal_protocol.status.supersedes): ordered by the seal's
    # connection stamps, not by when a worker received it.
    offline: ColumnElement[str] = literal_column("'offline'")  # constants, not parameters (BulkUpdate)
    online: ColumnElement[str] = literal_column("'online'")
    same_stamp = and_(seals.status_ts == v["status_ts"], or_(v["status"] == offline, seals.status == online))
    newer = or_(seals.status_ts.is_(None), seals.status_ts < v["status_ts"], same_stamp)
    status = and_(v["status"].is_not(None), newer)
    return seen, armed, status


def _seal_values(v: Values) -> dict[str, ColumnElement[Any]]:
    seen, armed, status = _seal_conditions(v)
    seals = _SEALS.c
    changes_state = and_(status, or_(seals.status.is_(None), seals.status != v["status"]))
    # The storage report of the batch's standing online status, with the status (an offline one leaves it).
    storage = and_(status, v["storage_fault"].is_not(None))
    cleared = v["storage_fault"] == literal_column("''")

    def if_(condition: ColumnElement[bool], new: ColumnElement[Any], old: ColumnElement[Any]) -> ColumnElement[Any]:
        return case((condition, new), else_=old)

    return {
        "last_seen_at": if_(seen, v["seen_at"], seals.last_seen_at),
        "last_event_at": if_(seen, v["seen_at"], seals.last_event_at),
        "armed": if_(armed, v["armed"], seals.armed),
        "armed_at": if_(armed, v["armed_at"], seals.armed_at),
        "armed_seq": if_(armed, v["armed_seq"], seals.armed_seq),
        "status": if_(status, v["status"], seals.status),
        "status_changed_at": if_(changes_state, v["status_at"], seals.status_changed_at),  # when it became that
        "status_ts": if_(status, v["status_ts"], seals.status_ts),
        "storage_fault": if_(storage, case((cleared, None), else_=v["storage_fault"]), seals.storage_fault),
        "storage_held": if_(storage, v["storage_held"], seals.storage_held),
        "storage_since": if_(storage, v["storage_since"], seals.storage_since),
    }


#: A batch's changes to its seals' rows (last seen, armed, status), one statement for all: each part applies only
#: forward (:func:`_seal_conditions`), and a row none of whose parts applies is not written.
_SEAL_CHANGES = BulkUpdate(
    _SEALS, "device_id", _SEAL_CHANGE_TYPES, values=_seal_values, where=lambda v: or_(*_seal_conditions(v))
)


def _storage_values(storage: dict[str, StorageReport | None], device_id: str) -> dict[str, Any]:
    if device_id not in storage:
        return {"storage_fault": None, "storage_held": None, "storage_since": None}
    report = storage[device_id]
    if report is None:
        return {"storage_fault": "", "storage_held": None, "storage_since": None}
    return {"storage_fault": report.reason.value, "storage_held": report.held, "storage_since": parse_ts(report.since)}


class Leaf:
    """A stored event as the Merkle log needs it: its id and its bytes."""

    __slots__ = ("id", "raw")

    def __init__(self, id: int, raw: bytes) -> None:  # noqa: A002 - the column's name
        self.id = id
        self.raw = raw


def insert_events(session: Session, rows: list[dict[str, object]]) -> list[int]:
    """Insert ``rows`` of the events table; their ids, in order."""
    return _INSERT_EVENTS.execute(session, rows)


class SealChanges:
    """What a batch changes in its seals' rows, written once at the end."""

    def __init__(self) -> None:
        self.seen: dict[str, datetime] = {}  # device_id -> received_at of its last stored event
        self.armed: dict[str, tuple[bool, datetime, int, str]] = {}  # device_id -> (armed, ts, seq, case) of its newest
        self.status: dict[str, tuple[str, datetime, datetime]] = {}  # device_id -> (status, received_at, its ts)
        #: device_id -> the storage report of its batch's last standing online status (None: it stores again)
        self.storage: dict[str, StorageReport | None] = {}

    def event(
        self, device_id: str, received_at: datetime, armed: bool | None, ts: datetime, seq: int, case_no: str
    ) -> None:
        """A stored event; ``armed``: what it says of the seal's state (``None``: nothing, or nothing the seal's
        current case may be told: an event filed under the case it left)."""
        self.seen[device_id] = max(self.seen.get(device_id, received_at), received_at)  # a re-offered held event
        newest = self.armed.get(device_id)
        if armed is not None and (newest is None or seq > newest[2]):
            self.armed[device_id] = (armed, ts, seq, case_no)

    def lock(
        self, session: Session, *, lock: set[str] | frozenset[str] = frozenset()
    ) -> dict[str, tuple[str | None, datetime | None]]:
        """Lock the rows of every seal changed and of those in ``lock``, in ``device_id`` order, before :meth:`write`
        (PostgreSQL); their (status, status_ts) as locked, by device id. Once all the changes are known: the rows
        locked here must be all that :meth:`write` would lock (a second lock of more rows could deadlock)."""
        changed = self.seen.keys() | self.armed.keys() | self.status.keys()
        rows = session.execute(_LOCK_SEALS, {"device_ids": sorted(changed | lock)})
        return {device_id: (status, status_ts) for device_id, status, status_ts in rows}

    def write(self, session: Session, *, lock: set[str] | frozenset[str] = frozenset(), locked: bool = False) -> None:
        """One update of every seal changed, after locking their rows in ``device_id`` order (unless :meth:`lock`
        has: ``locked``): the update itself locks them in the order it meets them, which another worker's may not
        share. The rows of the seals in ``lock`` are locked with them, changed or not
        (:mod:`server.ingest.snapshot_filing`)."""
        changed = self.seen.keys() | self.armed.keys() | self.status.keys()
        written = sorted(changed)
        if not locked and (lock or len(written) > 1) and session.get_bind().dialect.name == "postgresql":
            self.lock(session, lock=lock)  # SQLite: one writer
        rows = []
        for device_id in written:  # None: that part does not change
            told = self.armed.get(device_id, (None,) * 4)
            armed = dict(zip(("armed", "armed_at", "armed_seq", "armed_case"), told, strict=True))
            stated = self.status.get(device_id, (None,) * 3)
            status = dict(zip(("status", "status_at", "status_ts"), stated, strict=True))
            rows.append({"device_id": device_id, "seen_at": self.seen.get(device_id), **armed, **status,
                         **_storage_values(self.storage, device_id)})  # fmt: skip
        _SEAL_CHANGES.execute(session, rows)
