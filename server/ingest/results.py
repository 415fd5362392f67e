"""What the ingest makes of a message: an :class:`Outcome`, and for a refusal a :class:`Reason`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from seal_protocol import InvalidEnvelope, topic_account


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
    NON_CANONICAL = "non_canonical"
    DEVICE_MISMATCH = "device_mismatch"
    UNKNOWN_SEAL = "unknown_seal"
    BAD_SIGNATURE = "bad_signature"
    UNBOUND_SEAL = "unbound_seal"
    WRONG_CASE = "wrong_case"
    REPLAYED_SEQ = "replayed_seq"
    DUPLICATE_EVENT_ID = "duplicate_event_id"
    BROKEN_CHAIN = "broken_chain"
    INVALID_STATUS = "invalid_status"
    SNAPSHOT_MISMATCH = "snapshot_mismatch"
    INVALID_SNAPSHOT = "invalid_snapshot"
    STORAGE_ERROR = "storage_error"
    #: A picture no stored event of its seal names, past the seal's budget of those (:mod:`.unnamed_budget`).
    UNNAMED_SNAPSHOTS = "unnamed_snapshots"
    INTERNAL_ERROR = "internal_error"


@dataclass(frozen=True, slots=True)
class Message:
    """One received MQTT message."""

    topic: str
    payload: bytes
    received_at: datetime  # the court's wall clock: stored, and compared with other stored times


@dataclass(frozen=True, slots=True)
class IngestResult:
    outcome: Outcome
    #: The seal; for a quarantined message the seal account it came from, parsed or not (:func:`account_of`).
    device_id: str | None = None
    reason: Reason | None = None
    detail: str = ""
    #: For a stored ``command_ack``/``command_rejected``: what it did to its command (``AnswerOutcome`` value).
    command_answer: str | None = None
    #: For a status: its stamp was past the court's clock + skew, and it was ordered as received instead.
    stamp_clamped: bool = False
    #: For a stored event: the case it was stored under (the live bus tells only that case's pages).
    case_no: str | None = None
    #: For a stored event: it says the seal is armed (and was filed under the case the seal is bound to).
    says_armed: bool = False
    #: For a quarantined message: its quarantine row (the one made, or the one its copy is counted on) keeps all its
    #: bytes — set where a batch writes its quarantine (:meth:`~server.ingest.quarantine_rows.QuarantineCopies.write`).
    #: Only such a message may be receipted (:mod:`server.ingest.receipts`): the seal then deletes it.
    bytes_kept: bool = False
    #: For a quarantined message: past its seal account's budget of quarantine rows, it has no row, only a count
    #: (:mod:`server.ingest.refusal_count`); logged once a minute per account, not one line each.
    counted_only: bool = False


class Rejected(Exception):
    """Raised inside the ingest for a message that must be quarantined."""

    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail

    def kept(self) -> Rejected:
        """This refusal as a value to keep (in a batch, in a :class:`~server.ingest.checks.Prepared`): a copy without
        traceback or context. Their frames, each naming its caller's, reach the batch that keeps the refusal: a
        reference cycle that would leave the whole batch (its session, its rows) to the garbage collector."""
        return Rejected(self.reason, self.detail)


def classify_envelope_error(exc: InvalidEnvelope) -> Reason:
    """Map :func:`seal_protocol.decode_envelope`'s refusal code to a quarantine reason."""
    try:
        return Reason(exc.code)
    except ValueError:
        return Reason.INVALID_ENVELOPE


def storable(text: str) -> str:
    """``text`` as every database stores it: lone surrogates and NUL written as escapes."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\x00")


def storable_text(text: str, limit: int) -> str:
    """:func:`storable` ``text``, cut to ``limit``."""
    safe = storable(text)
    return safe if len(safe) <= limit else safe[: limit - 1] + "…"


def account_of(topic: str) -> str | None:
    """The seal account a message on ``topic`` came from: the device id of a ``seal/v1/<device_id>/…`` topic, whether
    or not the rest of it parses (:func:`seal_protocol.topic_account`; the broker's ACL lets a seal's account publish
    only under its own device id, :mod:`server.seals.broker_files`). A refusal is the account's: its quarantine row,
    its budgets of rows and bytes, its counts and its ``refusal_flood`` alarm. None for a topic under no device id,
    which only the court's own account can publish (all of those share one account, ``None`` / ``""``)."""
    return topic_account(topic)
