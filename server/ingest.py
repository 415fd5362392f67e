"""The ingest core: turn received MQTT messages into committed rows. No MQTT in here.

Each message becomes exactly one of: a stored event, a no-op duplicate, a status update, a stored snapshot, or a
quarantine row with a reason. Checks on an event, in order: the topic parses; the envelope decodes (size, UTF-8,
JSON, schema); its ``device_id`` equals the topic's; the seal is registered; the signature verifies against the
seal's registered key; the seal is bound to the envelope's case; (``device_id``, ``seq``) is new — a copy with the
same ``event_id`` and signature is a redelivery (no-op), anything else under a stored ``seq`` is a replay.

:meth:`Ingestor.ingest` stores a batch in one transaction and, if that fails, message by message, so that one bad
row cannot hold the others back. It returns only once every message's outcome is committed: the caller may then
acknowledge them all. If the database cannot take even a quarantine row it raises :class:`StorageUnavailable`
and the caller must not acknowledge anything from that batch.

Hash-chain and gap checks (``prev_hash``) belong here too, between the signature and the store; not done yet.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from pathlib import Path

from sqlalchemy import and_, or_, select
from sqlalchemy.exc import DataError, IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session

from seal_protocol import (
    InvalidEnvelope,
    InvalidTopic,
    MessageKind,
    ParsedTopic,
    SealStatus,
    SignatureError,
    decode_envelope,
    decode_status,
    parse_topic,
)
from seal_protocol.signing import VerifyKey, verify_envelope, verify_key_from_b64
from server.db import SessionFactory
from server.errors import StorageUnavailable
from server.metrics import IngestMetrics
from server.models import Event, QuarantinedMessage, Seal, Snapshot
from server.snapshots import MAX_SNAPSHOT_BYTES, SnapshotStore

logger = logging.getLogger(__name__)

#: A quarantined message is kept up to this many bytes (its full size is recorded).
QUARANTINE_RAW_LIMIT = 256 * 1024
_KEY_CACHE_LIMIT = 10_000


class Outcome(StrEnum):
    STORED = "stored"
    DUPLICATE = "duplicate"
    STATUS = "status"
    SNAPSHOT = "snapshot"
    IGNORED = "ignored"  # an empty retained status: the broker clearing it, not a message from the seal
    QUARANTINED = "quarantined"


class Reason(StrEnum):
    """Why a message was quarantined; also the ``reason`` label of the rejection counter."""

    INVALID_TOPIC = "invalid_topic"
    UNEXPECTED_KIND = "unexpected_kind"
    OVERSIZED = "oversized"
    INVALID_UTF8 = "invalid_utf8"
    INVALID_JSON = "invalid_json"
    INVALID_ENVELOPE = "invalid_envelope"
    DEVICE_MISMATCH = "device_mismatch"
    UNKNOWN_SEAL = "unknown_seal"
    BAD_SIGNATURE = "bad_signature"
    UNBOUND_SEAL = "unbound_seal"
    WRONG_CASE = "wrong_case"
    REPLAYED_SEQ = "replayed_seq"
    DUPLICATE_EVENT_ID = "duplicate_event_id"
    INVALID_STATUS = "invalid_status"
    SNAPSHOT_MISMATCH = "snapshot_mismatch"
    STORAGE_ERROR = "storage_error"
    INTERNAL_ERROR = "internal_error"


@dataclass(frozen=True, slots=True)
class Message:
    topic: str
    payload: bytes
    received_at: datetime


@dataclass(frozen=True, slots=True)
class IngestResult:
    outcome: Outcome
    device_id: str | None = None
    reason: Reason | None = None
    detail: str = ""


class _Rejected(Exception):
    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def classify_envelope_error(exc: InvalidEnvelope) -> Reason:
    """Map :func:`seal_protocol.decode_envelope`'s refusal to a reason code (it carries only a message)."""
    text = str(exc)
    for prefix, reason in (
        ("oversized", Reason.OVERSIZED),
        ("invalid UTF-8", Reason.INVALID_UTF8),
        ("invalid JSON", Reason.INVALID_JSON),
    ):
        if text.startswith(prefix):
            return reason
    return Reason.INVALID_ENVELOPE


class Ingestor:
    """Verifies and stores messages; one instance per ingest worker (not thread-safe)."""

    def __init__(self, session_factory: SessionFactory, *, metrics: IngestMetrics, snapshot_dir: Path) -> None:
        self._session_factory = session_factory
        self.metrics = metrics
        self.snapshots = SnapshotStore(snapshot_dir)
        self._keys: dict[str, VerifyKey] = {}

    # -- transactions ----------------------------------------------------------------------------------------------

    def ingest(self, messages: Sequence[Message]) -> list[IngestResult]:
        """Store ``messages`` and return their outcomes, all committed; raise :class:`StorageUnavailable`."""
        if not messages:
            return []
        try:
            with self._session_factory() as session:
                results = [self._handle(session, message) for message in messages]
                session.commit()
        except SQLAlchemyError as exc:
            logger.warning("batch of %d messages failed (%s); storing them one by one", len(messages), exc)
            return [self._ingest_alone(message) for message in messages]
        for message, result in zip(messages, results, strict=True):
            self._record(message, result)
        return results

    def _ingest_alone(self, message: Message) -> IngestResult:
        reason, detail = Reason.STORAGE_ERROR, ""
        # A unique-constraint race with another worker resolves itself on the second try (as a duplicate).
        for _attempt in range(2):
            try:
                with self._session_factory() as session:
                    result = self._handle(session, message)
                    session.commit()
                self._record(message, result)
                return result
            except (IntegrityError, DataError) as exc:
                detail = f"storage error: {type(exc.orig or exc).__name__}: {exc.orig or exc}"
            except SQLAlchemyError as exc:
                raise StorageUnavailable(f"database unavailable: {exc}") from exc
            except StorageUnavailable:
                raise
            except Exception as exc:  # a bug must not block the queue: keep the message, log the traceback
                logger.exception("internal error on a message from %s", message.topic)
                reason, detail = Reason.INTERNAL_ERROR, f"internal error: {type(exc).__name__}: {exc}"
                break
        result = IngestResult(Outcome.QUARANTINED, _device_of(message.topic), reason, detail[:2000])
        try:
            with self._session_factory() as session:
                self._quarantine(session, message, result)
                session.commit()
        except SQLAlchemyError as exc:
            raise StorageUnavailable(f"cannot store a quarantine row: {exc}") from exc
        self._record(message, result)
        return result

    def _record(self, message: Message, result: IngestResult) -> None:
        """Log and count a committed outcome."""
        match result.outcome:
            case Outcome.STORED:
                self.metrics.count_stored()
            case Outcome.DUPLICATE:
                logger.info("duplicate from %s ignored: %s", message.topic, result.detail)
                self.metrics.count_duplicate()
            case Outcome.STATUS:
                self.metrics.count_status()
            case Outcome.SNAPSHOT:
                self.metrics.count_snapshot()
            case Outcome.QUARANTINED:
                assert result.reason is not None
                logger.warning("quarantined a message on %r: %s: %s", message.topic, result.reason, result.detail)
                self.metrics.count_rejected(result.reason)
            case Outcome.IGNORED:
                pass

    # -- one message, inside a transaction -------------------------------------------------------------------------

    def _handle(self, session: Session, message: Message) -> IngestResult:
        """Add the rows of one message to ``session`` (no commit)."""
        device_id = _device_of(message.topic)
        try:
            parsed = _parse_topic(message.topic)
            match parsed.kind:
                case MessageKind.EVENT:
                    return self._event(session, parsed, message)
                case MessageKind.STATUS:
                    return self._status(session, parsed, message)
                case MessageKind.SNAPSHOT:
                    return self._snapshot(session, parsed, message)
                case _:
                    raise _Rejected(Reason.UNEXPECTED_KIND, f"the court does not ingest {parsed.kind} messages")
        except _Rejected as rejected:
            result = IngestResult(Outcome.QUARANTINED, device_id, rejected.reason, rejected.detail)
            self._quarantine(session, message, result)
            return result

    def _event(self, session: Session, topic: ParsedTopic, message: Message) -> IngestResult:
        try:
            envelope = decode_envelope(message.payload)
        except InvalidEnvelope as exc:
            raise _Rejected(classify_envelope_error(exc), str(exc)) from None
        if envelope.device_id != topic.device_id:
            raise _Rejected(
                Reason.DEVICE_MISMATCH,
                f"envelope device_id {envelope.device_id!r} differs from the topic's {topic.device_id!r}",
            )
        seal = self._registered_seal(session, topic.device_id)
        try:
            verify_envelope(envelope, self._verify_key(seal.public_key))
        except SignatureError as exc:
            raise _Rejected(Reason.BAD_SIGNATURE, f"bad signature: {exc}") from None
        case_no = self._bound_case(seal)
        if envelope.case_no != case_no:
            raise _Rejected(
                Reason.WRONG_CASE,
                f"seal bound to another case: the event says {envelope.case_no!r}, the seal is bound to {case_no!r}",
            )
        event_id = str(envelope.event_id)
        assert envelope.sig is not None  # verify_envelope refuses unsigned envelopes
        clashes = session.scalars(
            select(Event).where(
                or_(and_(Event.device_id == envelope.device_id, Event.seq == envelope.seq), Event.event_id == event_id)
            )
        ).all()
        for row in clashes:
            if row.device_id == envelope.device_id and row.seq == envelope.seq:
                if row.event_id == event_id and row.sig == envelope.sig:
                    seal.last_seen_at = message.received_at
                    return IngestResult(Outcome.DUPLICATE, seal.device_id, detail=f"seq {envelope.seq}")
                raise _Rejected(
                    Reason.REPLAYED_SEQ,
                    f"replayed seq: seq {envelope.seq} is already stored as event {row.event_id} with other content",
                )
            raise _Rejected(
                Reason.DUPLICATE_EVENT_ID,
                f"event_id {event_id} is already stored as {row.device_id} seq {row.seq}",
            )
        session.add(
            Event(
                device_id=envelope.device_id,
                case_no=envelope.case_no,
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
        )
        seal.last_seen_at = message.received_at
        seal.last_event_at = message.received_at
        return IngestResult(Outcome.STORED, seal.device_id)

    def _status(self, session: Session, topic: ParsedTopic, message: Message) -> IngestResult:
        if not message.payload:
            return IngestResult(Outcome.IGNORED, topic.device_id, detail="retained status cleared")
        try:
            state, _ts = decode_status(message.payload)
        except InvalidEnvelope as exc:
            raise _Rejected(Reason.INVALID_STATUS, str(exc)) from None
        seal = self._registered_seal(session, topic.device_id)
        if seal.status != state.value:
            seal.status = state.value
            seal.status_changed_at = message.received_at
        if state is SealStatus.ONLINE:
            # "offline" is usually the broker speaking (the Last Will), not a sign of life from the seal.
            seal.last_seen_at = message.received_at
        return IngestResult(Outcome.STATUS, seal.device_id, detail=state.value)

    def _snapshot(self, session: Session, topic: ParsedTopic, message: Message) -> IngestResult:
        assert topic.sha256 is not None
        if len(message.payload) > MAX_SNAPSHOT_BYTES:
            raise _Rejected(Reason.OVERSIZED, f"snapshot of {len(message.payload)} bytes, limit {MAX_SNAPSHOT_BYTES}")
        actual = hashlib.sha256(message.payload).hexdigest()
        if actual != topic.sha256:
            raise _Rejected(Reason.SNAPSHOT_MISMATCH, f"snapshot bytes hash to {actual}, the topic says {topic.sha256}")
        seal = self._registered_seal(session, topic.device_id)
        case_no = self._bound_case(seal)
        seal.last_seen_at = message.received_at
        if session.scalar(select(Snapshot.id).where(Snapshot.sha256 == actual)) is not None:
            return IngestResult(Outcome.DUPLICATE, seal.device_id, detail=f"snapshot {actual}")
        try:
            self.snapshots.put(actual, message.payload)
        except OSError as exc:
            raise StorageUnavailable(f"cannot write snapshot {actual}: {exc}") from exc
        session.add(
            Snapshot(
                sha256=actual,
                device_id=seal.device_id,
                case_no=case_no,
                size=len(message.payload),
                received_at=message.received_at,
            )
        )
        return IngestResult(Outcome.SNAPSHOT, seal.device_id, detail=actual)

    # -- helpers ---------------------------------------------------------------------------------------------------

    def _registered_seal(self, session: Session, device_id: str) -> Seal:
        seal = session.scalar(select(Seal).where(Seal.device_id == device_id))
        if seal is None:
            raise _Rejected(Reason.UNKNOWN_SEAL, f"unknown seal {device_id!r}: not registered with the court")
        return seal

    @staticmethod
    def _bound_case(seal: Seal) -> str:
        if seal.case_no is None:
            raise _Rejected(Reason.UNBOUND_SEAL, f"seal {seal.device_id!r} is not bound to a case")
        return seal.case_no

    def _verify_key(self, public_key: str) -> VerifyKey:
        key = self._keys.get(public_key)
        if key is None:
            key = verify_key_from_b64(public_key)
            if len(self._keys) >= _KEY_CACHE_LIMIT:
                self._keys.clear()
            self._keys[public_key] = key
        return key

    @staticmethod
    def _quarantine(session: Session, message: Message, result: IngestResult) -> None:
        assert result.reason is not None
        session.add(
            QuarantinedMessage(
                received_at=message.received_at,
                topic=message.topic,
                device_id=result.device_id,
                reason=result.reason.value,
                detail=result.detail,
                size=len(message.payload),
                raw=message.payload[:QUARANTINE_RAW_LIMIT],
            )
        )


def _parse_topic(topic: str) -> ParsedTopic:
    try:
        return parse_topic(topic)
    except InvalidTopic as exc:
        raise _Rejected(Reason.INVALID_TOPIC, str(exc)) from None


def _device_of(topic: str) -> str | None:
    """The device id of a topic that parses, else ``None`` (quarantine rows keep it when they can)."""
    try:
        return parse_topic(topic).device_id
    except InvalidTopic:
        return None


__all__ = ["IngestResult", "Ingestor", "Message", "Outcome", "Reason", "classify_envelope_error"]
