"""The retained ``status`` message: ``online`` when a seal connects, ``offline`` as its Last Will or on shutdown."""

from __future__ import annotations

from enum import StrEnum

from seal_protocol.envelope import parse_ts, utc_now_ms
from seal_protocol.errors import InvalidEnvelope
from seal_protocol.wirejson import canonical_json, loads_wire_json

#: A status message is tiny; anything larger is not one.
MAX_STATUS_BYTES = 1024
_FIELDS = {"agent_version", "state", "ts"}


class SealStatus(StrEnum):
    ONLINE = "online"
    OFFLINE = "offline"


def encode_status(state: SealStatus, *, agent_version: str | None = None, ts: str | None = None) -> bytes:
    """Canonical bytes ``{"agent_version": ..., "state": ..., "ts": ...}``.

    The Last Will is built when the seal connects, so its ``ts`` is the connection time, not the time of loss.
    """
    return canonical_json({"state": state.value, "ts": ts or utc_now_ms(), "agent_version": agent_version})


def decode_status(data: bytes) -> tuple[SealStatus, str]:
    """Return (state, ts) of a status message; raise :class:`InvalidEnvelope` if it is not exactly one.

    Parsed as strictly as an envelope: wire JSON, exactly the three fields, ``state`` one of the states, ``ts`` a
    real moment in the envelope's ``ts`` form, ``agent_version`` a string of at most 64 characters or null, and
    the bytes the canonical encoding of that object.
    """
    if len(data) > MAX_STATUS_BYTES:
        raise InvalidEnvelope(f"invalid status message: {len(data)} bytes, limit {MAX_STATUS_BYTES}", "oversized")
    try:
        obj = loads_wire_json(data, what="status message")
    except InvalidEnvelope as exc:
        raise InvalidEnvelope(f"invalid status message: {exc}", exc.code) from None
    if not isinstance(obj, dict) or obj.keys() != _FIELDS:
        raise InvalidEnvelope(f"invalid status message: expected an object with exactly the fields {sorted(_FIELDS)}")
    state, ts, version = obj["state"], obj["ts"], obj["agent_version"]
    if type(state) is not str or state not in {s.value for s in SealStatus}:
        raise InvalidEnvelope("invalid status message: state must be 'online' or 'offline'")
    try:
        parse_ts(ts)
    except ValueError as exc:
        raise InvalidEnvelope(f"invalid status message: ts: {exc}") from None
    if version is not None and (type(version) is not str or not 1 <= len(version) <= 64):
        raise InvalidEnvelope("invalid status message: agent_version must be null or a string of 1-64 characters")
    try:
        canonical = canonical_json(obj)
    except UnicodeEncodeError:  # a surrogate loads_wire_json let through would be a defect: refuse, never raise
        raise InvalidEnvelope("invalid status message: a string holds a surrogate", "invalid_json") from None
    if canonical != data:
        raise InvalidEnvelope("invalid status message: not the canonical encoding", "non_canonical")
    return SealStatus(state), ts
