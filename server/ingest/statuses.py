"""A batch's status messages (``online``/``offline``): which of them stand, and the alarms of those that do.

A seal's statuses are ordered by their connection's stamp (:func:`seal_protocol.status.supersedes`), bounded by the
court's clock: a stamp later than the message's ``received_at`` + :data:`STATUS_CLOCK_SKEW` (a seal that booted with
its clock ahead, or anyone who holds its MQTT password: statuses are not signed) is ordered, and stored, as that
bound, and says so in its result (logged and counted by the ingestor). Unbounded, one such stamp would make every
later status of the seal "older than the stored one" — its real Last Will among them — until that moment; bounded,
for at most the skew. The bound, not ``received_at``: a seal's later stamp must never be ordered before its earlier
one (a clock 4 min 59 s ahead kept, then 5 min 2 s ahead cut back to its receive time, would have been "older").

Whether a status stands is decided first against the seal's row as the batch read it, unlocked, so that the batch's
results are known in order. On PostgreSQL another worker may store a newer status of the seal before this batch
locks the row: :meth:`BatchStatuses.settle` locks the live alarms, then the seals' rows (the lock order of
:mod:`server.ingest.rows`), reads their statuses again and replays the batch's statuses of each seal against them,
in order. Only those that stand then raise their alarm or are written (the conditional UPDATE of :mod:`.rows` would
not apply the others either); the others' results say they were older. SQLite has one writer from BEGIN: what the
batch read is what it writes over.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from seal_protocol import SealStatus
from seal_protocol.envelope import parse_ts, utc_now_ms
from seal_protocol.errors import InvalidEnvelope
from seal_protocol.status import StorageReport, decode_status_message, supersedes
from server.alarms.book import AlarmBook
from server.ingest.alarming import on_status
from server.ingest.checks import BINDING_CLOCK_SKEW
from server.ingest.results import IngestResult, Message, Outcome, Reason, Rejected
from server.ingest.rows import SealChanges
from server.ingest.seal_cache import SealRow
from server.ingest.storage_alarm import on_storage, report_details, storage_details

#: How far ahead of the court's clock a status's stamp is taken as the seal's: the same bound as an event's
#: (:data:`~server.ingest.checks.BINDING_CLOCK_SKEW`). A later stamp orders its status as received.
STATUS_CLOCK_SKEW = BINDING_CLOCK_SKEW


def bounded_stamp(stamp: datetime, received_at: datetime) -> datetime:
    """The stamp a status is ordered and stored by: its own, at the latest ``received_at`` + the skew (monotonic in
    both: a later stamp, or a later receipt, never orders a status before an earlier one)."""
    return min(stamp, received_at + STATUS_CLOCK_SKEW)


@dataclass(slots=True)
class _Status:
    place: int  # the message's place in the batch
    seal: SealRow
    state: SealStatus
    stamp: datetime  # bounded (:func:`bounded_stamp`)
    ts: str  # as the seal sent it
    at: datetime  # received
    storage: StorageReport | None = None  # an online's: the seal cannot store events
    stands: bool = True


class BatchStatuses:
    """The status messages of one batch, in order; their changes go to ``changes``."""

    def __init__(self, changes: SealChanges, book: AlarmBook, *, offline_grace: timedelta) -> None:
        self._changes = changes
        self._book = book
        self._grace = offline_grace > timedelta(0)
        self._statuses: list[_Status] = []

    def receive(self, place: int, seal: SealRow, message: Message) -> tuple[IngestResult, Callable[[], None] | None]:
        """The result of a status message of ``seal``, and its alarm work (None: it changes nothing), to be run in
        the messages' order once :meth:`settle` has run."""
        try:
            decoded = decode_status_message(message.payload)
        except InvalidEnvelope as exc:
            raise Rejected(Reason.INVALID_STATUS, str(exc)) from None
        state, ts = decoded.state, decoded.ts
        changed = self._changes.status
        current = changed[seal.device_id][::2] if seal.device_id in changed else (seal.status, seal.status_ts)
        own = parse_ts(ts)  # its connection's stamp, checked by decode_status
        stamp = bounded_stamp(own, message.received_at)
        clamped = stamp != own
        cut = ""
        if clamped:
            bound = utc_now_ms(message.received_at + STATUS_CLOCK_SKEW)
            cut = f" (stamp {ts} past the court's clock + skew: ordered as {bound})"
        if not supersedes(state, stamp, *current):
            # A status of a connection that is over (an offline Last Will that arrives after the seal's next online,
            # whichever worker received it when, or however often the broker sent it): it changes nothing, nor
            # raises an alarm. Ordered by the seal's own stamps: seal_protocol.status.
            detail = f"{state.value} (older than the stored one){cut}"
            return IngestResult(Outcome.STATUS, seal.device_id, detail=detail, stamp_clamped=clamped), None
        changed[seal.device_id] = (state.value, message.received_at, stamp)
        if state is SealStatus.ONLINE:  # an online says whether the seal stores its events (unsigned)
            self._changes.storage[seal.device_id] = decoded.storage
        status = _Status(place, seal, state, stamp, ts, message.received_at, decoded.storage)
        self._statuses.append(status)
        said = f" (storage: {decoded.storage.reason.value}, {decoded.storage.held} held)" if decoded.storage else ""
        detail = f"{state.value}{said}{cut}"
        result = IngestResult(Outcome.STATUS, seal.device_id, detail=detail, stamp_clamped=clamped)
        return result, lambda: self._alarm(status)

    def _alarm(self, status: _Status) -> None:
        # A status is not signed (the broker sends the Last Will), so it is no sign of life: only a new signed
        # event refreshes last_seen_at and closes an offline alarm.
        if status.stands:
            seal = status.seal
            if status.state is SealStatus.ONLINE:  # raises, updates or closes storage_failed
                on_storage(self._book, seal.device_id, status.storage, case_no=seal.case_no, at=status.at)
            on_status(
                self._book, seal.device_id, status.state, case_no=seal.case_no, at=status.at, ts=status.ts,
                grace=self._grace, storage=self._stored_report(seal),
            )  # fmt: skip

    def _stored_report(self, seal: SealRow) -> dict[str, Any]:
        """The storage report of the seal's last standing online: this batch's, else its row's."""
        if seal.device_id in self._changes.storage:
            report = self._changes.storage[seal.device_id]
            return {} if report is None else {"storage": report_details(report)}
        return storage_details(seal.storage_fault, seal.storage_held, seal.storage_since)

    def settle(self, session: Session, results: list[IngestResult], *, lock: set[str]) -> bool:
        """Decide, against the seals' rows locked, which statuses stand (PostgreSQL; SQLite: as read); return
        whether the rows of the batch's seals (its changes' and ``lock``) are locked now. Before the alarm work."""
        if not self._statuses or session.get_bind().dialect.name != "postgresql":
            return False
        self._book.lock()  # the live alarms first: the lock order of server.ingest.rows
        stored = self._changes.lock(session, lock=lock)
        current = {d: stored.get(d, (None, None)) for d in {s.seal.device_id for s in self._statuses}}
        for device_id in current:  # the storage reports of the statuses that stand against the rows locked
            self._changes.storage.pop(device_id, None)
        for status in self._statuses:
            device_id = status.seal.device_id
            status.stands = supersedes(status.state, status.stamp, *current[device_id])
            if status.stands:
                current[device_id] = (status.state.value, status.stamp)
                self._changes.status[device_id] = (status.state.value, status.at, status.stamp)
                if status.state is SealStatus.ONLINE:
                    self._changes.storage[device_id] = status.storage
            else:  # another worker stored a newer status of the seal meanwhile
                result = results[status.place]
                results[status.place] = replace(result, detail=f"{status.state.value} (older than the stored one)")
        for device_id, (state, stamp) in stored.items():
            # None of the batch's stands (nor re-says an online with its storage report): nothing to write.
            unchanged = device_id in current and current[device_id] == (state, stamp)
            if unchanged and device_id not in self._changes.storage:
                self._changes.status.pop(device_id, None)
        return True
