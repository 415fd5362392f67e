"""The event envelope: one pydantic model, encoded as canonical JSON so a signature covers exact bytes.

The JSON admitted and its canonical form are :mod:`seal_protocol.wirejson`'s. Every field is always present;
absent optional values are ``null``. The bytes a signature covers are the canonical encoding of the envelope
*without* its ``sig`` key. :func:`decode_envelope` parses wire bytes strictly: exact field set, exact JSON types
(no coercion of ``true`` or ``"15"`` to a number), ASCII digits and a real date in ``ts``, and the bytes received
must be exactly the canonical encoding of what they parse to (else ``non_canonical``), so the bytes a receiver
stores are the bytes the seal signed.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from seal_protocol.errors import InvalidEnvelope
from seal_protocol.topics import DEVICE_ID_PATTERN
from seal_protocol.wirejson import (
    MAX_SAFE_INTEGER,
    canonical_json,
    check_exact_fields,
    check_wire_value,
    loads_wire_json,
)

SCHEMA_VERSION = 1
#: Upper bound of an encoded envelope. Snapshots travel on their own topic, so events stay small.
MAX_ENVELOPE_BYTES = 64 * 1024
#: Most pictures one event's ``payload.snapshots`` may name. The agent names at most 200 (an ``outbox_full`` part,
#: ``seal_agent.journal.snapshot_spool.MAX_LISTED``; a trigger's at most ``snapshot_max_frames`` ≤ 100). A receiver
#: files every name in the transaction that stores the event: the bound keeps that work a constant per event,
#: whatever a seal's key signs (``docs/protocol.md``, "Limits").
MAX_NAMED_SNAPSHOTS = 256
#: The payload field, ``true``, of every event a *simulated* seal signs (``seal-agent simulate``: mock pins, nothing
#: it reports happened on a site); absent from a real seal's events (docs/protocol.md, "Simulated seals").
SIMULATED_FIELD = "simulated"
#: ``ts`` is UTC with millisecond precision, always in exactly this shape, e.g. ``2026-11-26T05:03:23.123Z``.
#: ASCII digits only, and the date and time must exist (no 2026-02-30, no leap second 23:59:60).
TS_PATTERN = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z$"
_TS = re.compile(TS_PATTERN)
_SHA256_HEX = r"^[0-9a-f]{64}$"
_SIG_HEX = r"^[0-9a-f]{128}$"
#: ``event_id`` on the wire: a UUID in its canonical lowercase, hyphenated form.
_UUID_TEXT = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
#: Validation context of an envelope whose values come from :func:`loads_wire_json`.
_PARSED_FROM_WIRE: dict[str, bool] = {"parsed_from_wire": True}
#: The envelope's fields, each always present, and the JSON type each one must have on the wire.
_WIRE_TYPES: dict[str, tuple[type, ...]] = {
    "v": (int,),
    "event_id": (str,),
    "device_id": (str,),
    "case_no": (str,),
    "seq": (int,),
    "ts": (str,),
    "type": (str,),
    "payload": (dict,),
    "prev_hash": (str, type(None)),
    "sig": (str, type(None)),  # null only before signing: a receiver refuses it as unsigned
}


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
    WARNING_RESULT = "warning_result"
    AGENT_STARTED = "agent_started"
    EVENT_LOST = "event_lost"
    CLOCK_STEPPED = "clock_stepped"
    SNAPSHOT_LOST = "snapshot_lost"
    SENSOR_FLAPPING = "sensor_flapping"
    SENSOR_NORMAL = "sensor_normal"
    SENSOR_STUCK = "sensor_stuck"
    SENSOR_UNSTUCK = "sensor_unstuck"


def is_simulated(payload: Mapping[str, Any]) -> bool:
    """A simulated seal signed the event of ``payload``: its :data:`SIMULATED_FIELD` is the JSON value ``true`` (not
    a string, not 1). The one test of it, for the court, its report and ``seal-verify`` alike."""
    return payload.get(SIMULATED_FIELD) is True


def utc_now_ms(now: datetime | None = None) -> str:
    """Format ``now`` (default: the current time) as the envelope's ``ts``: UTC, milliseconds, ``Z``."""
    moment = (now or datetime.now(UTC)).astimezone(UTC)
    # Not strftime: its %Y does not pad a year below 1000 to four digits (glibc), and the ts has four.
    return moment.isoformat(timespec="milliseconds").removesuffix("+00:00") + "Z"


def parse_ts(ts: str) -> datetime:
    """The timezone-aware UTC datetime of an envelope ``ts`` string; ``ValueError`` if it is not one."""
    if not isinstance(ts, str) or not _TS.fullmatch(ts):
        raise ValueError(f"not a ts (YYYY-MM-DDTHH:MM:SS.mmmZ, ASCII digits): {ts!r}")
    return datetime(
        int(ts[0:4]),
        int(ts[5:7]),
        int(ts[8:10]),
        int(ts[11:13]),
        int(ts[14:16]),
        int(ts[17:19]),
        int(ts[20:23]) * 1000,
        tzinfo=UTC,
    )


def _real_moment(ts: str) -> str:
    parse_ts(ts)  # the pattern admits 2026-02-30 and 23:59:60; a datetime does not
    return ts


#: A ``ts`` string: the pattern, with ASCII digits, of a moment that exists.
Timestamp = Annotated[str, Field(pattern=TS_PATTERN), AfterValidator(_real_moment)]


class Envelope(BaseModel):
    """One event from one seal. Immutable; build new ones with :func:`new_envelope` or ``model_copy``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    v: Literal[1] = Field(1, description="Schema version of the envelope.")
    event_id: uuid.UUID = Field(description="Random UUID of this event, unique worldwide.")
    device_id: str = Field(pattern=DEVICE_ID_PATTERN.pattern, description="The seal that produced the event.")
    case_no: str = Field(min_length=1, max_length=64, description="The enforcement case (案号) the seal was bound to.")
    seq: StrictInt = Field(ge=1, le=MAX_SAFE_INTEGER, description="Per-device sequence number; starts at 1.")
    ts: Timestamp = Field(description="When the event happened: UTC, milliseconds, 'Z'.")
    type: EventType = Field(description="What happened.")
    payload: dict[str, Any] = Field(default_factory=dict, description="Type-specific details.")
    prev_hash: str | None = Field(
        None, pattern=_SHA256_HEX, description="SHA-256 (hex) of the previous event's canonical bytes."
    )
    sig: str | None = Field(
        None, pattern=_SIG_HEX, description="Ed25519 signature (hex) of the canonical bytes without 'sig'."
    )

    @field_validator("payload")
    @classmethod
    def _wire_payload(cls, payload: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        if info.context is not _PARSED_FROM_WIRE:  # loads_wire_json has checked parsed values already
            check_wire_value(payload, what="payload")
        named = payload.get("snapshots")
        if isinstance(named, list) and len(named) > MAX_NAMED_SNAPSHOTS:
            raise ValueError(f"snapshots names {len(named)} pictures, limit {MAX_NAMED_SNAPSHOTS}")
        return payload

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


def decode_signed_envelope(data: bytes) -> tuple[Envelope, bytes]:
    """:func:`decode_envelope`, and the envelope's :meth:`~Envelope.signing_bytes` made from the same encoding
    (the ingest verifies every event it decodes: one encoding instead of two)."""
    envelope, fields = _decode(data)
    return envelope, _without_sig(data, fields)


def _without_sig(data: bytes, fields: dict[str, Any]) -> bytes:
    """The canonical encoding of ``fields`` without ``sig``, cut from ``data``, their canonical encoding.

    Keys are sorted, so ``data`` ends with ``,"sig":…`` and then the three keys that sort after it (``ts``,
    ``type``, ``v``, whose values the checks have made plain ASCII): removing that pair is encoding the fields
    without it, without encoding them again."""
    sig = fields["sig"]
    pair = b',"sig":' + (b"null" if sig is None else b'"' + sig.encode("ascii") + b'"')
    tail = f',"ts":"{fields["ts"]}","type":"{fields["type"]}","v":{fields["v"]}}}'.encode("ascii")
    if data.endswith(pair + tail):
        return data[: -len(pair) - len(tail)] + tail
    return canonical_json({key: value for key, value in fields.items() if key != "sig"})  # not reached: kept safe


def _decode(data: bytes) -> tuple[Envelope, dict[str, Any]]:
    """The envelope of ``data`` and its JSON fields (see :func:`decode_envelope`).

    Refused, in this order: ``oversized``; ``invalid_utf8``; ``invalid_json`` (see :mod:`seal_protocol.wirejson`);
    ``invalid_envelope`` (a missing or unknown field, a JSON type other than the field's, a value out of bounds);
    ``non_canonical`` (valid, but other bytes than the canonical encoding of the same envelope).
    """
    if len(data) > MAX_ENVELOPE_BYTES:
        raise InvalidEnvelope(f"oversized: {len(data)} bytes, limit {MAX_ENVELOPE_BYTES}", "oversized")
    obj = check_exact_fields(loads_wire_json(data, what="envelope"), _WIRE_TYPES, what="envelope")
    if not _UUID_TEXT.fullmatch(obj["event_id"]):
        raise InvalidEnvelope("invalid envelope: event_id: expected a lowercase hyphenated UUID")
    try:
        envelope = Envelope.model_validate(obj, context=_PARSED_FROM_WIRE)
    except ValidationError as exc:
        raise InvalidEnvelope(_describe(exc)) from None
    # The parsed fields, not the model's dump: they are the same values (exact types checked above, the UUID's
    # text is its canonical form), and the bytes must be the encoding of what was parsed.
    fields = obj
    try:
        canonical = canonical_json(fields)
    except UnicodeEncodeError:  # a surrogate loads_wire_json let through would be a defect: refuse, never raise
        raise InvalidEnvelope("invalid JSON: a string holds a surrogate", "invalid_json") from None
    if canonical != data:
        raise InvalidEnvelope(
            "non-canonical: the bytes are not the canonical encoding of the envelope they hold "
            "(key order, white space, escapes or number form differ)",
            "non_canonical",
        )
    return envelope, fields


def decode_envelope(data: bytes) -> Envelope:
    """Parse wire bytes into an :class:`Envelope`; raise :class:`InvalidEnvelope` with a readable reason.

    Refused, in this order: ``oversized``; ``invalid_utf8``; ``invalid_json`` (see :mod:`seal_protocol.wirejson`);
    ``invalid_envelope`` (a missing or unknown field, a JSON type other than the field's, a value out of bounds);
    ``non_canonical`` (valid, but other bytes than the canonical encoding of the same envelope).
    """
    return _decode(data)[0]


def reopen_envelope(data: bytes) -> Envelope:
    """The envelope of bytes :func:`decode_envelope` accepted before (the same bytes): parsed and built again without
    the wire checks and the canonical re-encoding, which held then and hold for the same bytes (about a third of the
    work). Never for bytes not known to decode: those may be anything."""
    return Envelope.model_validate(json.loads(data), context=_PARSED_FROM_WIRE)


def _describe(exc: ValidationError) -> str:
    problems = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "envelope"
        problems.append(f"{where}: {err['msg']}")
    return "invalid envelope: " + "; ".join(problems)
