"""The rows an ingest batch writes with Core statements: its events (:class:`~server.core.bulk_insert.BulkInsert`,
their ids by event id), and what they change in the seals' rows (last seen, armed, status,
:class:`~server.core.bulk_update.BulkUpdate`), one statement each for any number of rows. Compiled once.

Lock order: every transaction of the ingest locks the rows it shares with other workers in one order — chain states
(sorted by ``device_id``; those of seals heard of for the first time are made in their place in that order, by the
statement that locks the others: :meth:`~server.ingest.chain.ChainBook.load`), then live alarms (by id,
:class:`server.alarms.book.AlarmBook`, as the liveness check does), then seal rows (sorted by ``device_id``, all at
once before they are written), then the commands its answers settle (by id,
:meth:`~server.ingest.batch.IngestBatch.apply`), then quarantine rows (sorted by key,
:mod:`server.ingest.quarantine_rows`), then the log's writer lock — so two workers cannot deadlock.

The web's and the command line's writers keep that order where they share rows with it: a case's row (locked
first, by whatever changes its seals; a seal that moves changes two cases, locked by ``case_no``), then seal rows
(by ``device_id``), then their commands (by id), notices, and the log's lock at the commit
(:mod:`server.audit.service`); an alarm's acknowledgement or closing locks that alarm alone. Case and seal rows
are locked ``FOR NO KEY UPDATE`` (:data:`server.core.db.NO_KEY_UPDATE`): the ingest's inserts of events, alarms
and snapshots take key-share locks on their case's and seal's rows (the foreign keys' checks), which ``FOR UPDATE``
would wait for. docs/deploy.md lists the writers and their locks."""

from __future__ import annotations

from datetime import datetime
from typing import cast

from sqlalchemy import Table, bindparam, or_, select, tuple_
from sqlalchemy.orm import Session

from server.core.bulk_insert import BulkInsert
from server.core.bulk_update import BulkUpdate
from server.core.value_lists import one_of
from server.evidence.models import Event
from server.seals.models import Seal

_EVENTS = cast(Table, Event.__table__)
_SEALS = cast(Table, Seal.__table__)
_STORED = (_EVENTS.c.device_id, _EVENTS.c.seq, _EVENTS.c.event_id, _EVENTS.c.prev_hash, _EVENTS.c.raw)
#: Stored events with one of some event ids; stored events at some (device_id, seq) pairs (rare: expanding is fine).
SAME_ID = select(*_STORED).where(one_of(_EVENTS.c.event_id, "event_ids"))
NEAR = select(*_STORED).where(tuple_(_EVENTS.c.device_id, _EVENTS.c.seq).in_(bindparam("pairs", expanding=True)))
#: Locks the seal rows a batch is about to write, in ``device_id`` order (``NO KEY UPDATE``: rows referring to a seal
#: may still be inserted meanwhile).
_LOCK_SEALS = (
    select(_SEALS.c.device_id)
    .where(one_of(_SEALS.c.device_id, "device_ids"))
    .order_by(_SEALS.c.device_id)
    .with_for_update(key_share=True)
)
#: One fixed statement for any number of rows, the ids returned by event id (unique): :mod:`server.core.bulk_insert`.
_INSERT_EVENTS = BulkInsert(_EVENTS, [c.name for c in _EVENTS.c if c.name != "id"], ids_by="event_id")
_KEY = {"device_id": _SEALS.c.device_id.type}
_SEEN = BulkUpdate(  # only forward: with shared workers, an event received earlier may commit after a later one
    _SEALS,
    "device_id",
    {**_KEY, "at": _SEALS.c.last_seen_at.type},
    values=lambda v: {"last_seen_at": v["at"], "last_event_at": v["at"]},
    where=lambda v: or_(_SEALS.c.last_seen_at.is_(None), _SEALS.c.last_seen_at <= v["at"]),
)
_ARMED = BulkUpdate(  # only over an older armed state: another transaction may have stored a newer one
    _SEALS,
    "device_id",
    {**_KEY, "armed": _SEALS.c.armed.type, "armed_at": _SEALS.c.armed_at.type, "seq": _SEALS.c.armed_seq.type},
    values=lambda v: {"armed": v["armed"], "armed_at": v["armed_at"], "armed_seq": v["seq"]},
    where=lambda v: or_(_SEALS.c.armed_seq.is_(None), _SEALS.c.armed_seq < v["seq"]),
)
_STATUS = BulkUpdate(  # only over an older status: with shared workers, an older status may commit after a newer one
    _SEALS,
    "device_id",
    {**_KEY, "status": _SEALS.c.status.type, "at": _SEALS.c.status_changed_at.type},
    values=lambda v: {"status": v["status"], "status_changed_at": v["at"]},
    where=lambda v: or_(_SEALS.c.status_changed_at.is_(None), _SEALS.c.status_changed_at <= v["at"]),
)


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
        self.armed: dict[str, tuple[bool, datetime, int]] = {}  # device_id -> (armed, ts, seq) of its newest
        self.status: dict[str, tuple[str, datetime]] = {}  # device_id -> (status, received_at) changed to

    def event(self, device_id: str, received_at: datetime, armed: bool | None, ts: datetime, seq: int) -> None:
        self.seen[device_id] = max(self.seen.get(device_id, received_at), received_at)  # a re-offered held event
        newest = self.armed.get(device_id)
        if armed is not None and (newest is None or seq > newest[2]):
            self.armed[device_id] = (armed, ts, seq)

    def write(self, session: Session) -> None:
        """The three updates, after locking every row they write in ``device_id`` order: one statement after
        another, they would otherwise lock a seal updated by the second before one updated by the first."""
        written = sorted(self.seen.keys() | self.armed.keys() | self.status.keys())
        if len(written) > 1 and session.get_bind().dialect.name == "postgresql":  # SQLite: one writer at a time
            session.execute(_LOCK_SEALS, {"device_ids": written})
        _SEEN.execute(session, [{"device_id": d, "at": self.seen[d]} for d in sorted(self.seen)])
        armed = sorted(self.armed.items())
        _ARMED.execute(session, [{"device_id": d, "armed": a, "armed_at": ts, "seq": seq} for d, (a, ts, seq) in armed])
        status = sorted(self.status.items())
        _STATUS.execute(session, [{"device_id": d, "status": s, "at": at} for d, (s, at) in status])
