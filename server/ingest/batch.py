"""The checks of the ingest, applied to the messages of one transaction.

Checks on an event, in order: the topic parses; the envelope decodes (size, UTF-8, JSON, schema); its ``device_id``
equals the topic's; the seal is registered; the signature verifies against the seal's registered key; the seal is
bound to the envelope's case — now, or when the event happened (:func:`binding_covers`: a seal draining its outbox
after it was unbound or rebound still delivers the evidence of its old case), or the stored chain of that case names
the event's exact bytes (a clock that was off: :mod:`.late_chain`); (``device_id``, ``seq``) is new — a
copy with the same ``event_id`` and signature is a redelivery (no-op), anything else under a stored ``seq`` is a
replay, and a stored ``event_id`` under another ``seq`` is refused too. The first three, and the signature against
the key the seal had at the worker's last transaction, are checked before the transaction (:mod:`.checks`). An event
still refused as ``wrong_case`` after the chain's placement raises ``case_mismatch`` in the seal's current case: its
signature verified, it is the seal's own word (:mod:`.case_mismatch`).

Then the hash chain (:mod:`server.ingest.chain`): ``prev_hash`` must link to the stored neighbours, or the event is
quarantined as ``broken_chain``; an event beyond a gap is stored at once, and the gap raises a ``missing_events`` alarm
``gap_wait_s`` later if the missing events have not arrived by then (another worker may be storing them:
:mod:`.gap_wait`), which closes when they arrive. Alarms (:mod:`server.ingest.alarming`) are written in the same
transaction, and so is the state of the command a ``command_ack``/``command_rejected`` answers (:func:`apply_answer`,
once the seals' rows are locked: the lock order of :mod:`server.ingest.rows`), and so is each stored event's leaf in the
Merkle log (:func:`append_events`, after the batch's other rows are written).

An :class:`IngestBatch` gives the same outcomes as applying the messages one at a time (but events refused for their
case are tried again, top down, after the batch's others: a successor later in the batch places its predecessor here,
not one at a time), with a fixed number of compiled Core statements per batch whatever the number of seals in it: one
read of the seals' rows, one of their chain states (on PostgreSQL two: one that locks them, making those missing, then
the read), one for stored events that share an ``event_id`` (and one for stored neighbours, needed only for
redeliveries, gaps and a worker's first event of a seal; one for the events above those the time rule refused; two of
the quarantine per seal of a picture no stored event of its seal names, and a few more if refused events name it:
:mod:`.late_chain`; two, and one per such seal, for its budget of those: :mod:`.unnamed_budget`), then one executemany
inserting the events (and one read of their ids), one update of the chain states (with one read of the database's clock
if a gap opens or waits, and of the caught-up marks if one may be due: :mod:`.gap_wait`), two of the seals. Alarms are
settled after the events are inserted, in the messages' order (and one of the cases if a seal's intrusion says it is
disarmed: :mod:`.disarmed`); the messages are applied in the order received (``[5, 4]`` stores 5 beyond a gap that 4
then fills: nothing is raised), and alarms about gaps are settled once per batch. The ORM is left to the rare rows:
quarantine, snapshots, alarms, commands. A snapshot is filed under its events' case once its seal's row is locked
(:mod:`.snapshot_filing`). A moved seal's refusals the chain may yet place wait for case_mismatch: :mod:`.case_hold`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import cast

from sqlalchemy import select
from sqlalchemy.orm import Session

from seal_protocol import Envelope, MessageKind, ParsedTopic
from server.alarms.book import AlarmBook
from server.commands.service import ANSWER_TYPES
from server.core.base import utc_now
from server.evidence.log import Frontier, append_events
from server.evidence.models import Event
from server.evidence.queries import armed_state
from server.evidence.snapshot_files import SnapshotStore
from server.ingest.alarming import EventAlarms
from server.ingest.answers import Answer, apply_answers
from server.ingest.case_hold import CaseHolds
from server.ingest.case_mismatch import on_refused
from server.ingest.chain import ChainBook
from server.ingest.checks import (
    BINDING_CLOCK_SKEW,
    Prepared,
    binding_covers,
    case_of_bindings,
    check_signature,
    current_case,
    prepare,
)
from server.ingest.gap_wait import caught_up_lag, settle_gaps
from server.ingest.late_chain import ChainPlacement, HoldBack, refused_events, refused_for_case
from server.ingest.quarantine_rows import QuarantineBudget, QuarantineCopies
from server.ingest.refusal_count import RefusalBudget
from server.ingest.results import IngestResult, Message, Outcome, Reason, Rejected, account_of
from server.ingest.rows import NEAR, SAME_ID, Leaf, SealChanges, insert_events
from server.ingest.seal_cache import IngestCache, SealRow, read_seals
from server.ingest.snapshot_filing import SnapshotFiling
from server.ingest.statuses import BatchStatuses
from server.notify.outbox import notifying
from server.seals.models import SealBinding

__all__ = ["BINDING_CLOCK_SKEW", "IngestBatch", "binding_covers"]

logger = logging.getLogger(__name__)


class IngestBatch:
    """Adds the rows of some messages to ``session``, in order; the caller commits, then hands
    :meth:`ChainBook.heads` of :attr:`chain` and :attr:`frontier` to the cache."""

    def __init__(
        self,
        session: Session,
        *,
        cache: IngestCache,
        snapshots: SnapshotStore,
        fold_window: timedelta,
        offline_grace: timedelta = timedelta(0),
        gap_wait: timedelta = timedelta(0),
        written_snapshots: frozenset[str] | set[str] = frozenset(),
        quarantine_budget: QuarantineBudget | None = None,
        refusal_budget: RefusalBudget | None = None,
        unnamed_budget: int | None = None,
    ) -> None:
        self.session = session
        self.written_snapshots = written_snapshots  # pictures already in ``snapshots`` (the hashes)
        self.gap_wait = gap_wait  # how old a gap is when it raises missing_events (:mod:`.gap_wait`)
        self._now = utc_now()
        self.cache = cache
        self.snapshots = snapshots
        self.chain = ChainBook(session, cache)
        self.alarms = AlarmBook(session, fold_window=fold_window, on_open=notifying(session))
        self._seals: dict[str, SealRow] = {}
        self._bindings: dict[str, list[SealBinding]] = {}  # device_id -> its bindings, newest first
        self._by_seq: dict[tuple[str, int], tuple[str, bytes]] = {}  # (device_id, seq) -> (event_id, raw)
        self._by_event_id: dict[str, tuple[str, int]] = {}  # event_id -> (device_id, seq)
        self._filing = SnapshotFiling(unnamed_budget)  # the pictures received, and those the stored events name
        self._case_of: dict[int, str] = {}  # a message's place -> the case its binding gives its event (phase 1)
        self._case_refused: dict[int, Rejected] = {}  # a message's place -> why no case takes its event
        self._placement = ChainPlacement()  # what places an event the time rule refused (:mod:`.late_chain`)
        self._unplaced: dict[int, tuple[Message, Envelope]] = {}  # refused so far: the batch's later events may place
        self._holds = CaseHolds(self.chain, now=self._now)  # those of them held back from case_mismatch
        self._quarantined = QuarantineCopies(quarantine_budget, refusal_budget)
        self._rows: list[dict[str, object]] = []  # events stored by this batch, in order: the log's new leaves
        self._ids: list[int] = []  # their ids, once inserted
        self._events = EventAlarms(self.alarms, session, self._rows, self.chain.max_seq)  # raised or closed
        self._settle: list[Callable[[], None]] = []  # alarm work, in the messages' order, after the insert
        self._changes = SealChanges()
        self._statuses = BatchStatuses(self._changes, self.alarms, offline_grace=offline_grace)
        # (place, answer, its case, at, its row): the case the event is stored in, recorded where it is stored
        self._answers: list[Answer] = []
        self.frontier: Frontier | None = None  # the log's, after this batch's append (once it commits)

    def apply(self, messages: Sequence[Message], prepared: Sequence[Prepared] | None = None) -> list[IngestResult]:
        """``prepared``: :func:`prepare` of each message, made before the transaction (else made here)."""
        if prepared is None:
            prepared = [prepare(message, self.cache) for message in messages]
        with self.session.no_autoflush:
            device_ids = {_device(p.checked) for p in prepared} - {None}
            self._seals = read_seals(self.session, cast(set[str], device_ids))
            self.cache.saw(self._seals)
            self.alarms.expect(self._seals)
            checked = [self._check(i, p) for i, p in enumerate(prepared)]
            envelopes = [c for c in checked if isinstance(c, Envelope)]
            self.chain.load({e.device_id for e in envelopes})
            self._load_stored(envelopes)
            self._placement.load(self.session, refused_for_case(checked, self._case_refused))
            results = [self._apply_one(i, messages[i], checked[i]) for i in range(len(messages))]
            self._place_unplaced(results)
            self._ids = insert_events(self.session, self._rows)
            # Statuses stand only against the seals' rows locked (PostgreSQL: another worker's may be newer).
            locked = self._statuses.settle(self.session, results, lock=self._filing.seals)
            self._holds.settle(self.session, self.alarms, self._unplaced, self._rows, self._case_now)
            for settle in self._settle:
                settle()
            # The closures name this batch: dropped now, it is freed by reference counting when the transaction ends,
            # not left as a cycle for the garbage collector (its full collections held it 100-200 ms: bench/ingest.py).
            self._settle.clear()
            at = max(m.received_at for m in messages)
            lag = lambda: caught_up_lag(self.session)  # noqa: E731 - read only if a gap is due
            settle_gaps(self.alarms, self.chain, self._case_now, gap_wait=self.gap_wait, at=at, lag=lag)
            self.chain.write()
            self._changes.write(self.session, lock=self._filing.seals, locked=locked)
            hold = self._filing.budget(HoldBack(refused_events(checked, messages, results), now=self._now), self._now)
            for place in self._filing.write(self.session, results, hold.pictures):  # held back: kept by the seal
                results[place] = self._refused(messages[place], hold.refusal(results[place]))
            self._apply_answers(results)
            self._quarantined.write(self.session, messages, results, self.alarms)
            self.session.flush()  # every other row first: the log's writer lock is then held only for the log
            if self._rows:
                leaves = [Leaf(i, cast(bytes, row["raw"])) for i, row in zip(self._ids, self._rows, strict=True)]
                # it reads .id and .raw only
                self.frontier = append_events(self.session, cast(list[Event], leaves), self.cache.frontier)
            return results

    def _apply_answers(self, results: list[IngestResult]) -> None:
        """Apply the stored answers to their commands (:func:`~server.ingest.answers.apply_answers`)."""
        for place, answer, detail in apply_answers(self.session, self.alarms, self._answers):
            results[place] = replace(results[place], detail=detail, command_answer=answer)

    # -- phase 1: what the seal's row decides (the rest was checked before the transaction) ------------------------

    def _check(self, place: int, prepared: Prepared) -> Envelope | ParsedTopic | Rejected:
        envelope = prepared.checked
        if not isinstance(envelope, Envelope):
            return envelope
        try:
            seal = self._seal(envelope.device_id)
            check_signature(prepared, envelope, seal, self.cache)
        except Rejected as rejected:
            return rejected.kept()
        try:
            # by the message's place, not its (device_id, seq): a replay of that seq in the batch names its own case
            self._case_of[place] = self._check_case(seal, envelope)
        except Rejected as rejected:
            # Decided in phase 2, once the stored events are read: the very bytes already stored are a redelivery
            # (stored while the seal was bound, whatever its clock said), not a refusal that would never end.
            self._case_refused[place] = rejected.kept()
        return envelope

    def _check_case(self, seal: SealRow, envelope: Envelope) -> str:
        """The case the event lands in. The seal's current case takes all its events (whatever its clock says); an
        ended binding takes the events stamped within it (:func:`binding_covers`). The seal may spell the number
        another way (full-width parentheses) than the court stores it."""
        case_no = current_case(seal, envelope)
        if case_no is not None:
            return case_no
        return case_of_bindings(seal, envelope, self._bindings_of(seal.device_id))

    def _bindings_of(self, device_id: str) -> list[SealBinding]:
        if device_id not in self._bindings:
            query = select(SealBinding).where(SealBinding.device_id == device_id)
            order = (SealBinding.bound_at.desc(), SealBinding.id.desc())
            self._bindings[device_id] = list(self.session.scalars(query.order_by(*order)))
        return self._bindings[device_id]

    def _snapshot_case(self, seal: SealRow) -> str:
        """A snapshot's topic names no case: the seal's current one, or else the last it was bound to (an unbound
        seal draining its outbox)."""
        if seal.case_no is not None:
            return seal.case_no
        bindings = self._bindings_of(seal.device_id)
        if not bindings:
            raise Rejected(Reason.UNBOUND_SEAL, f"seal {seal.device_id!r} is not bound to a case")
        return bindings[0].case_no

    def _load_stored(self, envelopes: list[Envelope]) -> None:
        """Stored events that share an event_id with ``envelopes``, or a (device_id, seq), or are neighbours whose
        link the chain check needs and the cache does not hold."""
        if not envelopes:
            return
        rows = SAME_ID.rows(self.session, {"event_ids": sorted({str(e.event_id) for e in envelopes})})
        pairs = sorted((d, s) for d, seqs in self.chain.lookups(envelopes).items() for s in seqs)
        if pairs:
            rows += self.session.execute(NEAR, {"pairs": pairs})
        for device_id, seq, event_id, prev_hash, raw in rows:
            self._remember(device_id, seq, event_id, raw)
            self.chain.remember(device_id, seq, raw, prev_hash)

    def _remember(self, device_id: str, seq: int, event_id: str, raw: bytes) -> None:
        self._by_seq[(device_id, seq)] = (event_id, raw)
        self._by_event_id[event_id] = (device_id, seq)

    # -- phase 2: in order, against stored events and the ones this batch added ------------------------------------

    def _apply_one(self, place: int, message: Message, checked: Envelope | ParsedTopic | Rejected) -> IngestResult:
        # A refusal decided earlier is not raised again: its new traceback would name this frame, which names it.
        if isinstance(checked, Rejected):
            return self._refused(message, checked)
        try:
            if isinstance(checked, Envelope) and place in self._case_refused:
                stored = self._by_seq.get((checked.device_id, checked.seq))
                if stored is not None and stored[1] == message.payload:
                    return IngestResult(Outcome.DUPLICATE, checked.device_id, detail=f"seq {checked.seq}")
                # its time fell in no binding of its case; the stored chain may place it (a clock behind: .late_chain)
                case_no = self._placement.case_of(checked, message.payload, self._bindings_of(checked.device_id))
                if case_no is None:  # the batch's later events may yet place it (:meth:`_place_unplaced`)
                    return self._unplaced_now(place, message, checked)
                return self._store_event(place, checked, message, case_no)
            if isinstance(checked, Envelope):
                return self._store_event(place, checked, message, self._case_of[place])
            match checked.kind:
                case MessageKind.STATUS:
                    return self._status_message(place, checked, message)
                case MessageKind.SNAPSHOT:
                    return self._snapshot(place, checked, message)
                case _:
                    raise Rejected(Reason.UNEXPECTED_KIND, f"the court does not ingest {checked.kind} messages")
        except Rejected as rejected:
            return self._refused(message, rejected)

    def _unplaced_now(self, place: int, message: Message, envelope: Envelope) -> IngestResult:
        """Refused for its case unless :meth:`_place_unplaced` places it; then the seal's word (verified in phase 1)
        tells its case to the one it is bound to, in order (:mod:`.case_mismatch`), or waits (:mod:`.case_hold`)."""
        self._unplaced[place] = (message, envelope)
        refusal, seal, at = self._case_refused[place], self._seal(envelope.device_id), message.received_at
        if envelope.seq > self.chain.max_seq(envelope.device_id):  # not one refused before, sent again
            self._holds.consider(place, envelope, seal.case_no, self._bindings_of(envelope.device_id))
            self._settle.append(lambda: self._tell_case(place, envelope, refusal, seal.case_no, at))
        return IngestResult(Outcome.QUARANTINED, account_of(message.topic), refusal.reason, refusal.detail)

    def _tell_case(self, place: int, envelope: Envelope, refusal: Rejected, case_no: str | None, at: datetime) -> None:
        if place in self._unplaced and not self._holds.held(place):  # refused in the end
            on_refused(self.alarms, envelope, refusal, case_no=case_no, at=at)

    def _place_unplaced(self, results: list[IngestResult]) -> None:
        """Place what the batch's later events place (:mod:`.late_chain`): top down, their alarms in seq order."""
        settled = len(self._settle)
        for _, _, place in sorted((e.device_id, -e.seq, place) for place, (_, e) in self._unplaced.items()):
            message, envelope = self._unplaced[place]
            case_no = self._placement.case_of(envelope, message.payload, self._bindings_of(envelope.device_id))
            if case_no is not None:
                del self._unplaced[place]
                try:
                    results[place] = self._store_event(place, envelope, message, case_no)
                except Rejected as rejected:
                    results[place] = self._refused(message, rejected)
        self._settle[settled:] = reversed(self._settle[settled:])
        for place in sorted(self._unplaced):  # refused after all
            self._quarantined.add(self._unplaced[place][0], results[place])  # written at the batch's end

    def _refused(self, message: Message, rejected: Rejected) -> IngestResult:
        result = IngestResult(Outcome.QUARANTINED, account_of(message.topic), rejected.reason, rejected.detail)
        self._quarantined.add(message, result)  # one more copy for the quarantine, written at the batch's end
        return result

    def _store_event(self, place: int, envelope: Envelope, message: Message, case_no: str) -> IngestResult:
        seal = self._seal(envelope.device_id)
        event_id = str(envelope.event_id)
        assert envelope.sig is not None  # verify_envelope refuses unsigned envelopes
        stored = self._by_seq.get((envelope.device_id, envelope.seq))
        if stored is not None:
            if stored[1] == message.payload:  # a redelivery (or a replay) of the very bytes already stored
                return IngestResult(Outcome.DUPLICATE, seal.device_id, detail=f"seq {envelope.seq}")
            raise Rejected(
                Reason.REPLAYED_SEQ,
                f"replayed seq: seq {envelope.seq} is already stored as event {stored[0]} with other content",
            )
        if event_id in self._by_event_id:
            device_id, seq = self._by_event_id[event_id]
            raise Rejected(Reason.DUPLICATE_EVENT_ID, f"event_id {event_id} is already stored as {device_id} seq {seq}")
        self.chain.check(envelope, message.payload)
        index = len(self._rows)
        occurred_at = envelope.occurred_at  # parsed from its text at each call: once
        self._rows.append(
            {
                "device_id": envelope.device_id,
                "case_no": case_no,
                "seq": envelope.seq,
                "event_id": event_id,
                "type": envelope.type.value,
                "ts": occurred_at,
                "received_at": message.received_at,
                "prev_hash": envelope.prev_hash,
                "sig": envelope.sig,
                "payload": envelope.payload,
                "raw": message.payload,
            }
        )
        self._remember(envelope.device_id, envelope.seq, event_id, message.payload)
        self._placement.stored(envelope, case_no)
        self.chain.record(envelope, message.payload)
        self._filing.named(seal.device_id, case_no, envelope.payload)
        late = case_no != seal.case_no
        at = message.received_at
        row_id = self._row_id(index)
        self._settle.append(lambda: self._events.on_event(envelope, case_no=case_no, row_id=row_id, at=at, late=late))
        if envelope.type in ANSWER_TYPES:  # applied once the seals' rows are locked (:meth:`_apply_answers`)
            self._answers.append((place, envelope, case_no, message.received_at, row_id))
        armed = None if late else armed_state(envelope.type.value, envelope.payload)  # not told of a case it left
        self._changes.event(seal.device_id, message.received_at, armed, occurred_at, envelope.seq, case_no)
        return IngestResult(Outcome.STORED, seal.device_id, case_no=case_no, says_armed=armed is True)

    def _case_now(self, device_id: str) -> str | None:
        return self._seals[device_id].case_no

    def _row_id(self, index: int) -> Callable[[], int]:
        """The id of the batch's ``index``-th event, for an alarm that names it (once it is inserted): an id, not
        its ORM row, which would load the whole event (its payload and bytes) to set a foreign key."""
        return lambda: self._ids[index]

    def _status_message(self, place: int, topic: ParsedTopic, message: Message) -> IngestResult:
        if not message.payload:
            return IngestResult(Outcome.IGNORED, topic.device_id, detail="retained status cleared")
        result, alarm = self._statuses.receive(place, self._seal(topic.device_id), message)  # server.ingest.statuses
        if alarm is not None:
            self._settle.append(alarm)
        return result

    def _snapshot(self, place: int, topic: ParsedTopic, message: Message) -> IngestResult:
        # Its bytes were checked before the transaction (size, hash, JPEG: checks.snapshot_refusal).
        assert topic.sha256 is not None
        actual = topic.sha256
        seal = self._seal(topic.device_id)
        case_no = self._snapshot_case(seal)  # a snapshot is not signed: no sign of life either
        try:
            if actual not in self.written_snapshots:  # (written before the transaction: snapshot_writes)
                self.snapshots.put(actual, message.payload)
        except OSError as exc:  # this picture alone waits: quarantined unreceipted, the seal sends it again
            # (a disk's error, or the bucket's: unreachable, refusing us, or holding other bytes under this name)
            logger.error("cannot store snapshot %s of %s: %s", actual, seal.device_id, exc)
            raise Rejected(Reason.STORAGE_ERROR, f"storage error: cannot store the snapshot: {exc}") from exc
        # Its row is added once its seal's row is locked: under the cases whose events name it, else ``case_no``
        # (a duplicate if every one of them holds it already: :meth:`SnapshotFiling.write`).
        size, at = len(message.payload), message.received_at
        self._filing.picture(place, actual, seal.device_id, case_no=case_no, size=size, received_at=at)
        self.written_snapshots = self.written_snapshots | {actual}
        return IngestResult(Outcome.SNAPSHOT, seal.device_id, detail=actual)

    def _seal(self, device_id: str) -> SealRow:
        seal = self._seals.get(device_id)
        if seal is None:
            raise Rejected(Reason.UNKNOWN_SEAL, f"unknown seal {device_id!r}: not registered with the court")
        return seal


def _device(checked: Envelope | ParsedTopic | Rejected) -> str | None:
    return None if isinstance(checked, Rejected) else checked.device_id
