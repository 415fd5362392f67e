"""The event envelope: one pydantic model, encoded as canonical JSON so a signature covers exact bytes.

Canonical JSON here means: UTF-8, object keys sorted, no insignificant whitespace, non-ASCII characters written
as themselves (not ``\\u`` escapes), no NaN/Infinity. Every field is always present; absent optional values are
``null``. The bytes a signature covers are the canonical encoding of the envelope *without* its ``sig`` key.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from seal_protocol.errors import InvalidEnvelope
from seal_protocol.topics import DEVICE_ID_PATTERN

SCHEMA_VERSION = 1
#: Upper bound of an encoded envelope. Snapshots travel on their own topic, so events stay small.
MAX_ENVELOPE_BYTES = 64 * 1024
#: ``ts`` is UTC with millisecond precision, always in exactly this shape, e.g. ``2026-11-26T05:03:23.123Z``.
TS_PATTERN = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$"
_SHA256_HEX = r"^[0-9a-f]{64}$"
_SIG_HEX = r"^[0-9a-f]{128}$"


class EventType(StrEnum):
    """Event types a seal may report. ``docs/protocol.md`` describes each one's payload."""

    INTRUSION = "intrusion"
    HEARTBEAT = "heartbeat"
    TAMPER = "tamper"
    CAMERA_BLIND = "camera_blind"
    CAMERA_RECOVERED = "camera_recovered"
    CAMERA_LOST = "camera_lost"
    CAMERA_FOUND = "camera_found"
    ARMED = "armed"
    DISARMED = "disarmed"
    COMMAND_ACK = "command_ack"
    COMMAND_REJECTED = "command_rejected"
    OUTBOX_FULL = "outbox_full"
    SNAPSHOT_TAKEN = "snapshot_taken"
    AGENT_STARTED = "agent_started"


def canonical_json(obj: Any) -> bytes:
    """Encode ``obj`` as canonical JSON bytes (see module docstring)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode(
        "utf-8"
    )


def utc_now_ms(now: datetime | None = None) -> str:
    """Format ``now`` (default: the current time) as the envelope's ``ts``: UTC, milliseconds, ``Z``."""
    moment = (now or datetime.now(UTC)).astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def parse_ts(ts: str) -> datetime:
    """The timezone-aware UTC datetime of an envelope ``ts`` string."""
    return datetime.strptime(ts, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


class Envelope(BaseModel):
    """One event from one seal. Immutable; build new ones with :func:`new_envelope` or ``model_copy``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    v: Literal[1] = Field(1, description="Schema version of the envelope.")
    event_id: uuid.UUID = Field(description="Random UUID of this event, unique worldwide.")
    device_id: str = Field(pattern=DEVICE_ID_PATTERN.pattern, description="The seal that produced the event.")
    case_no: str = Field(
        min_length=1, max_length=64, description="The enforcement case (案号) the seal was bound to."
    )
    seq: int = Field(ge=1, le=2**53 - 1, description="Per-device sequence number; starts at 1, never reused.")
    ts: str = Field(pattern=TS_PATTERN, description="When the event happened: UTC, milliseconds, 'Z'.")
    type: EventType = Field(description="What happened.")
    payload: dict[str, Any] = Field(default_factory=dict, description="Type-specific details.")
    prev_hash: str | None = Field(
        None, pattern=_SHA256_HEX, description="SHA-256 (hex) of the previous event's canonical bytes."
    )
    sig: str | None = Field(
        None, pattern=_SIG_HEX, description="Ed25519 signature (hex) of the canonical bytes without 'sig'."
    )

    def as_json_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def signing_bytes(self) -> bytes:
        """The exact bytes a signature covers: canonical JSON of every field except ``sig``."""
        body = self.as_json_dict()
        del body["sig"]
        return canonical_json(body)

    @property
    def occurred_at(self) -> datetime:
        return parse_ts(self.ts)


def new_envelope(
    *,
    device_id: str,
    case_no: str,
    seq: int,
    type: EventType,
    payload: dict[str, Any] | None = None,
    prev_hash: str | None = None,
    now: datetime | None = None,
) -> Envelope:
    """A fresh, unsigned envelope with a random ``event_id`` and ``ts`` of ``now``."""
    try:
        return Envelope(
            event_id=uuid.uuid4(),
            device_id=device_id,
            case_no=case_no,
            seq=seq,
            ts=utc_now_ms(now),
            type=type,
            payload=payload or {},
            prev_hash=prev_hash,
        )
    except ValidationError as exc:
        raise InvalidEnvelope(_describe(exc)) from exc


def encode_envelope(envelope: Envelope) -> bytes:
    """The canonical bytes of ``envelope`` as sent on the wire (and hashed by the next event's ``prev_hash``)."""
    data = canonical_json(envelope.as_json_dict())
    if len(data) > MAX_ENVELOPE_BYTES:
        raise InvalidEnvelope(f"oversized: {len(data)} bytes, limit {MAX_ENVELOPE_BYTES}", "oversized")
    return data


def envelope_hash(data: bytes) -> str:
    """SHA-256 (hex) of an encoded envelope: what the next event of the same device puts in ``prev_hash``."""
    return hashlib.sha256(data).hexdigest()


def decode_envelope(data: bytes) -> Envelope:
    """Parse wire bytes into an :class:`Envelope`; raise :class:`InvalidEnvelope` with a readable reason."""
    if len(data) > MAX_ENVELOPE_BYTES:
        raise InvalidEnvelope(f"oversized: {len(data)} bytes, limit {MAX_ENVELOPE_BYTES}", "oversized")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidEnvelope(f"invalid UTF-8 at byte {exc.start}", "invalid_utf8") from None
    try:
        obj = json.loads(text, parse_constant=_refuse_constant)
    except (json.JSONDecodeError, ValueError) as exc:
        raise InvalidEnvelope(f"invalid JSON: {exc}", "invalid_json") from None
    if not isinstance(obj, dict):
        raise InvalidEnvelope(f"invalid envelope: expected a JSON object, got {type(obj).__name__}")
    try:
        return Envelope.model_validate(obj)
    except ValidationError as exc:
        raise InvalidEnvelope(_describe(exc)) from None


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed")


def _describe(exc: ValidationError) -> str:
    problems = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "envelope"
        problems.append(f"{where}: {err['msg']}")
    return "invalid envelope: " + "; ".join(problems)
