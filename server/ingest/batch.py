"""The checks of the ingest, applied to the messages of one transaction.

Checks on an event, in order: the topic parses; the envelope decodes (size, UTF-8, JSON, schema); its ``device_id``
equals the topic's; the seal is registered; the signature verifies against the seal's registered key; the seal is
bound to the envelope's case — now, or when the event happened (:func:`binding_covers`: a seal draining its outbox
after it was unbound or rebound still delivers the evidence of its old case); (``device_id``, ``seq``) is new — a
copy with the same ``event_id`` and signature is a redelivery (no-op), anything else under a stored ``seq`` is a
replay, and a stored ``event_id`` under another ``seq`` is refused too.

Then the hash chain (:mod:`server.ingest.chain`): ``prev_hash`` must link to the stored neighbours, or the event is
quarantined as ``broken_chain``; an event beyond a gap is stored and the gap raises a ``missing_events`` alarm that
closes when the missing events arrive. Alarms (:mod:`server.ingest.alarming`) are written in the same transaction,
and so is the state of the command a ``command_ack``/``command_rejected`` answers (:func:`apply_answer`), and so
is each stored event's leaf in the Merkle log (:func:`append_events`, after the batch's other rows are flushed).

An :class:`IngestBatch` gives the same outcomes as applying the messages one at a time, but with one query for the
batch's seals, one for their chain states, one for stored events that clash with or neighbour the batch's, one for
their live alarms, and one flush before the log's append (instead of one per message). Alarms about gaps are
settled once per batch, so events of one seal arriving out of order within a batch raise no alarm.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from seal_protocol import (
    Envelope,
    InvalidEnvelope,
    InvalidTopic,
    MessageKind,
    ParsedTopic,
    SignatureError,
    decode_envelope,
    decode_status,
    parse_topic,
)
from seal_protocol.signing import VerifyKey, verify_envelope, verify_key_from_b64
from server.alarms.book import AlarmBook
from server.commands.service import apply_answer
from server.evidence.log import append_events
from server.evidence.models import Event, Snapshot
from server.evidence.queries import armed_state
from server.evidence.snapshot_files import MAX_SNAPSHOT_BYTES, SnapshotStore, jpeg_problem
from server.ingest.alarming import on_chain_change, on_event, on_status
from server.ingest.chain import ChainBook
from server.ingest.models import QuarantinedMessage
from server.ingest.results import (
    IngestResult,
    Message,
    Outcome,
    Reason,
    Rejected,
    classify_envelope_error,
    device_of,
    storable_text,
)
from server.notify.outbox import notifying
from server.seals.case_numbers import case_no_spellings
from server.seals.models import Seal, SealBinding

logger = logging.getLogger(__name__)

#: A quarantined message is kept up to this many bytes (its full size is recorded).
QUARANTINE_RAW_LIMIT = 256 * 1024
#: The quarantine's text columns are cut to these many characters.
QUARANTINE_TOPIC_LIMIT = 512
QUARANTINE_DETAIL_LIMIT = 2000

#: How far a seal's clock may be off when its event is matched to a binding that has ended: an event stamped up to
#: this long before the binding began or after it ended still belongs to it. A seal's clock is NTP-synchronised, but
#: a Raspberry Pi has no real-time clock and starts from its last saved time until NTP answers.
BINDING_CLOCK_SKEW = timedelta(minutes=5)


def binding_covers(binding: SealBinding, case_no: str, ts: datetime, *, skew: timedelta = BINDING_CLOCK_SKEW) -> bool:
    """Was the seal bound to ``case_no`` by ``binding`` when it says the event happened (``ts``), give or take
    ``skew``?"""
    if binding.case_no != case_no or ts < binding.bound_at - skew:
        return False
    return binding.unbound_at is None or ts < binding.unbound_at + skew


class VerifyKeyCache:
    """Parsed public keys by their base64 text (parsing costs more than a dict lookup)."""

    def __init__(self, limit: int = 10_000) -> None:
        self._keys: dict[str, VerifyKey] = {}
        self._limit = limit

    def get(self, public_key: str) -> VerifyKey:
        key = self._keys.get(public_key)
        if key is None:
            key = verify_key_from_b64(public_key)
            if len(self._keys) >= self._limit:
                self._keys.clear()
            self._keys[public_key] = key
        return key


class IngestBatch:
    """Adds the rows of some messages to ``session``, in order; the caller commits."""

    def __init__(
        self,
        session: Session,
        *,
        keys: VerifyKeyCache,
        snapshots: SnapshotStore,
        fold_window: timedelta,
        offline_grace: timedelta = timedelta(0),
    ) -> None:
        self.session = session
        self.offline_grace = offline_grace
        self.keys = keys
        self.snapshots = snapshots
        self.chain = ChainBook(session)
        self.alarms = AlarmBook(session, fold_window=fold_window, on_open=notifying(session))
        self._seals: dict[str, Seal] = {}
        self._bindings: dict[str, list[SealBinding]] = {}  # device_id -> its bindings, newest first
        self._by_seq: dict[tuple[str, int], tuple[str, bytes]] = {}  # (device_id, seq) -> (event_id, raw)
        self._by_event_id: dict[str, tuple[str, int]] = {}  # event_id -> (device_id, seq)
        self._snapshot_shas: set[tuple[str, str]] = set()  # (sha256, case_no) stored by this batch
        self._case_of: dict[tuple[str, int], str] = {}  # (device_id, seq) -> the case its event lands in
        self._quarantined: dict[tuple[str, str, str], QuarantinedMessage] = {}  # (sha256, topic, reason) -> row
        self._events: list[Event] = []  # stored by this batch, in order: the log's new leaves

    def apply(self, messages: Sequence[Message]) -> list[IngestResult]:
        with self.session.no_autoflush:
            device_ids = {d for d in (device_of(m.topic) for m in messages) if d is not None}
            if device_ids:
                seals = self.session.scalars(select(Seal).where(Seal.device_id.in_(device_ids)))
                self._seals = {seal.device_id: seal for seal in seals}
                self._load_bindings(device_ids)
            self.alarms.expect(self._seals)
            checked = [self._check(message) for message in messages]
            envelopes = [c for c in checked if isinstance(c, Envelope)]
            self.chain.load({e.device_id for e in envelopes})
            self._load_stored(envelopes)
            results = [self._apply_one(m, c) for m, c in zip(messages, checked, strict=True)]
            at = max(m.received_at for m in messages)
            for change in self.chain.changes():
                on_chain_change(self.alarms, change, case_no=self._seals[change.device_id].case_no, at=at)
            if self._events:  # every other row first: the log's writer lock is then held only for the log
                self.session.flush()
                append_events(self.session, self._events)
            return results

    def _quarantine(self, message: Message, result: IngestResult) -> None:
        """The quarantine row of ``message``, or one more copy on the row of the same bytes, topic and reason."""
        assert result.reason is not None
        key = (hashlib.sha256(message.payload).hexdigest(), message.topic, result.reason.value)
        row = self._quarantined.get(key)
        if row is None:
            sha256, topic, reason = key
            query = select(QuarantinedMessage).where(
                QuarantinedMessage.sha256 == sha256, QuarantinedMessage.reason == reason
            )
            row = next((r for r in self.session.scalars(query) if r.topic == topic), None)
        if row is None:
            row = self.quarantine(self.session, message, result)
        else:
            row.copies += 1
            row.last_received_at = max(row.last_received_at or row.received_at, message.received_at)
        self._quarantined[key] = row

    @staticmethod
    def quarantine(
        session: Session, message: Message, result: IngestResult, *, detail: str | None = None, keep_raw: bool = True
    ) -> QuarantinedMessage:
        """Add the quarantine row of ``message`` (whose ``result`` says why); texts are made storable."""
        assert result.reason is not None
        row = QuarantinedMessage(
            received_at=message.received_at,
            topic=storable_text(message.topic, QUARANTINE_TOPIC_LIMIT),
            device_id=result.device_id,
            reason=result.reason.value,
            detail=storable_text(result.detail if detail is None else detail, QUARANTINE_DETAIL_LIMIT),
            size=len(message.payload),
            raw=message.payload[:QUARANTINE_RAW_LIMIT] if keep_raw else b"",
            sha256=hashlib.sha256(message.payload).hexdigest(),
            copies=1,
        )
        session.add(row)
        return row

    # -- phase 1: everything that needs no stored events -----------------------------------------------------------

    def _check(self, message: Message) -> Envelope | ParsedTopic | Rejected:
        try:
            topic = parse_topic(message.topic)
            if topic.kind is not MessageKind.EVENT:
                return topic
            return self._verified_envelope(topic, message)
        except InvalidTopic as exc:
            return Rejected(Reason.INVALID_TOPIC, str(exc))
        except Rejected as rejected:
            return rejected

    def _verified_envelope(self, topic: ParsedTopic, message: Message) -> Envelope:
        try:
            envelope = decode_envelope(message.payload)
        except InvalidEnvelope as exc:
            raise Rejected(classify_envelope_error(exc), str(exc)) from None
        if envelope.device_id != topic.device_id:
            raise Rejected(
                Reason.DEVICE_MISMATCH,
                f"envelope device_id {envelope.device_id!r} differs from the topic's {topic.device_id!r}",
            )
        seal = self._seal(topic.device_id)
        try:
            verify_envelope(envelope, self.keys.get(seal.public_key))
        except SignatureError as exc:
            raise Rejected(Reason.BAD_SIGNATURE, f"bad signature: {exc}") from None
        self._case_of[(envelope.device_id, envelope.seq)] = self._check_case(seal, envelope)
        return envelope

    def _load_bindings(self, device_ids: set[str]) -> None:
        query = select(SealBinding).where(SealBinding.device_id.in_(device_ids))
        for binding in self.session.scalars(query.order_by(SealBinding.bound_at.desc(), SealBinding.id.desc())):
            self._bindings.setdefault(binding.device_id, []).append(binding)

    def _check_case(self, seal: Seal, envelope: Envelope) -> str:
        """The case the event lands in. The seal's current case takes all its events (whatever its clock says); an
        ended binding takes the events stamped within it (:func:`binding_covers`). The seal may spell the number
        another way (full-width parentheses) than the court stores it."""
        if envelope.case_no == seal.case_no and seal.case_no is not None:
            return seal.case_no
        spellings = case_no_spellings(envelope.case_no)
        if seal.case_no in spellings:
            return seal.case_no
        ts = envelope.occurred_at
        for binding in self._bindings.get(seal.device_id, ()):
            if any(binding_covers(binding, spelling, ts) for spelling in spellings):
                return binding.case_no
        if seal.case_no is None:
            raise Rejected(
                Reason.UNBOUND_SEAL,
                f"seal {seal.device_id!r} is not bound to a case, nor was it bound to {envelope.case_no!r} at "
                f"{envelope.ts}",
            )
        raise Rejected(
            Reason.WRONG_CASE,
            f"seal bound to another case: the event says {envelope.case_no!r} at {envelope.ts}, the seal is bound "
            f"to {seal.case_no!r} and was not bound to {envelope.case_no!r} then",
        )

    def _snapshot_case(self, seal: Seal) -> str:
        """A snapshot's topic names no case: the seal's current one, or else the last it was bound to (an unbound
        seal draining its outbox)."""
        if seal.case_no is not None:
            return seal.case_no
        bindings = self._bindings.get(seal.device_id)
        if not bindings:
            raise Rejected(Reason.UNBOUND_SEAL, f"seal {seal.device_id!r} is not bound to a case")
        return bindings[0].case_no

    def _load_stored(self, envelopes: list[Envelope]) -> None:
        """Stored events that share a (device_id, seq) or an event_id with ``envelopes``, or are their neighbours."""
        if not envelopes:
            return
        seqs = self.chain.neighbours(envelopes)
        for envelope in envelopes:
            seqs.setdefault(envelope.device_id, set()).add(envelope.seq)
        same_seq = [and_(Event.device_id == device_id, Event.seq.in_(s)) for device_id, s in seqs.items()]
        same_id = Event.event_id.in_({str(e.event_id) for e in envelopes})
        columns = (Event.device_id, Event.seq, Event.event_id, Event.prev_hash, Event.raw)
        for device_id, seq, event_id, prev_hash, raw in self.session.execute(
            select(*columns).where(or_(same_id, *same_seq))
        ):
            self._remember(device_id, seq, event_id, raw)
            self.chain.remember(device_id, seq, raw, prev_hash)

    def _remember(self, device_id: str, seq: int, event_id: str, raw: bytes) -> None:
        self._by_seq[(device_id, seq)] = (event_id, raw)
        self._by_event_id[event_id] = (device_id, seq)

    # -- phase 2: in order, against stored events and the ones this batch added ------------------------------------

    def _apply_one(self, message: Message, checked: Envelope | ParsedTopic | Rejected) -> IngestResult:
        try:
            if isinstance(checked, Rejected):
                raise checked
            if isinstance(checked, Envelope):
                return self._store_event(checked, message)
            match checked.kind:
                case MessageKind.STATUS:
                    return self._status(checked, message)
                case MessageKind.SNAPSHOT:
                    return self._snapshot(checked, message)
                case _:
                    raise Rejected(Reason.UNEXPECTED_KIND, f"the court does not ingest {checked.kind} messages")
        except Rejected as rejected:
            result = IngestResult(Outcome.QUARANTINED, device_of(message.topic), rejected.reason, rejected.detail)
            self._quarantine(message, result)
            return result

    def _store_event(self, envelope: Envelope, message: Message) -> IngestResult:
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
        row = Event(
            device_id=envelope.device_id,
            case_no=self._case_of[(envelope.device_id, envelope.seq)],
            seq=envelope.seq,
            event_id=event_id,
            type=envelope.type.value,
            ts=envelope.occurred_at,
            received_at=message.received_at,
            prev_hash=envelope.prev_hash,
            sig=envelope.sig,
            payload=envelope.payload,
            raw=message.payload,
        )
        self.session.add(row)
        self._events.append(row)
        self._remember(envelope.device_id, envelope.seq, event_id, message.payload)
        self.chain.record(envelope, message.payload)
        on_event(self.alarms, envelope, row, at=message.received_at, late=row.case_no != seal.case_no)
        answer = apply_answer(self.session, envelope, at=message.received_at)
        seal.last_seen_at = message.received_at
        seal.last_event_at = message.received_at
        armed = armed_state(row.type, envelope.payload)
        if armed is not None and (seal.armed_seq is None or envelope.seq > seal.armed_seq):
            seal.armed, seal.armed_at, seal.armed_seq = armed, envelope.occurred_at, envelope.seq
        detail = f"command {envelope.payload.get('command_id')}: {answer}" if answer is not None else ""
        return IngestResult(Outcome.STORED, seal.device_id, detail=detail, command_answer=answer)

    def _status(self, topic: ParsedTopic, message: Message) -> IngestResult:
        if not message.payload:
            return IngestResult(Outcome.IGNORED, topic.device_id, detail="retained status cleared")
        try:
            state, ts = decode_status(message.payload)
        except InvalidEnvelope as exc:
            raise Rejected(Reason.INVALID_STATUS, str(exc)) from None
        seal = self._seal(topic.device_id)
        if seal.status != state.value:
            seal.status = state.value
            seal.status_changed_at = message.received_at
        # A status is not signed (the broker sends the Last Will), so it is no sign of life: only a new signed
        # event refreshes last_seen_at and closes an offline alarm.
        on_status(self.alarms, seal, state, at=message.received_at, ts=ts, grace=self.offline_grace > timedelta(0))
        return IngestResult(Outcome.STATUS, seal.device_id, detail=state.value)

    def _snapshot(self, topic: ParsedTopic, message: Message) -> IngestResult:
        assert topic.sha256 is not None
        if len(message.payload) > MAX_SNAPSHOT_BYTES:
            raise Rejected(
                Reason.INVALID_SNAPSHOT, f"snapshot of {len(message.payload)} bytes, limit {MAX_SNAPSHOT_BYTES}"
            )
        actual = hashlib.sha256(message.payload).hexdigest()
        if actual != topic.sha256:
            raise Rejected(Reason.SNAPSHOT_MISMATCH, f"snapshot bytes hash to {actual}, the topic says {topic.sha256}")
        problem = jpeg_problem(message.payload)
        if problem is not None:
            raise Rejected(Reason.INVALID_SNAPSHOT, f"not a JPEG image: {problem}")
        seal = self._seal(topic.device_id)
        case_no = self._snapshot_case(seal)  # a snapshot is not signed: no sign of life either
        stored = select(Snapshot.id).where(Snapshot.sha256 == actual, Snapshot.case_no == case_no)
        if (actual, case_no) in self._snapshot_shas or self.session.scalar(stored) is not None:
            return IngestResult(Outcome.DUPLICATE, seal.device_id, detail=f"snapshot {actual}")
        try:
            self.snapshots.put(actual, message.payload)
        except OSError as exc:  # this picture alone waits: quarantined unreceipted, the seal sends it again
            logger.error("cannot write snapshot %s of %s: %s", actual, seal.device_id, exc)
            raise Rejected(Reason.STORAGE_ERROR, f"storage error: cannot write the snapshot file: {exc}") from exc
        self.session.add(
            Snapshot(
                sha256=actual,
                device_id=seal.device_id,
                case_no=case_no,
                size=len(message.payload),
                received_at=message.received_at,
            )
        )
        self._snapshot_shas.add((actual, case_no))
        return IngestResult(Outcome.SNAPSHOT, seal.device_id, detail=actual)

    def _seal(self, device_id: str) -> Seal:
        seal = self._seals.get(device_id)
        if seal is None:
            raise Rejected(Reason.UNKNOWN_SEAL, f"unknown seal {device_id!r}: not registered with the court")
        return seal
