"""The wire contract between a seal and the court: topics, the event envelope, canonical bytes, signing.

Both ``seal_agent`` and ``server`` import this package; neither builds a topic or a payload by hand elsewhere.
The authority for humans is ``docs/protocol.md``.
"""

from seal_protocol.envelope import (
    MAX_ENVELOPE_BYTES,
    MAX_NAMED_SNAPSHOTS,
    SCHEMA_VERSION,
    Envelope,
    EventType,
    canonical_json,
    decode_envelope,
    decode_signed_envelope,
    encode_envelope,
    envelope_hash,
    new_envelope,
    parse_ts,
    utc_now_ms,
)
from seal_protocol.errors import InvalidEnvelope, InvalidTopic, ProtocolError, SignatureError
from seal_protocol.status import SealStatus, decode_status, encode_status
from seal_protocol.topics import (
    TOPIC_ROOT,
    MessageKind,
    ParsedTopic,
    cmd_topic,
    event_topic,
    parse_topic,
    snapshot_topic,
    status_topic,
    subscription_all,
    topic_account,
    validate_device_id,
)

__all__ = [
    "SealStatus",
    "decode_status",
    "encode_status",
    "MAX_ENVELOPE_BYTES",
    "MAX_NAMED_SNAPSHOTS",
    "envelope_hash",
    "parse_ts",
    "SCHEMA_VERSION",
    "TOPIC_ROOT",
    "Envelope",
    "EventType",
    "InvalidEnvelope",
    "InvalidTopic",
    "MessageKind",
    "ParsedTopic",
    "ProtocolError",
    "SignatureError",
    "canonical_json",
    "cmd_topic",
    "decode_envelope",
    "decode_signed_envelope",
    "encode_envelope",
    "event_topic",
    "new_envelope",
    "parse_topic",
    "snapshot_topic",
    "status_topic",
    "subscription_all",
    "topic_account",
    "utc_now_ms",
    "validate_device_id",
]
