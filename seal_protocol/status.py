"""The retained ``status`` message: ``online`` when a seal connects, ``offline`` as its Last Will or on shutdown.

``ts`` is the stamp of the connection the status is about, not the moment it was sent: the seal stamps each
connection before it connects (the Last Will goes out in the CONNECT, built then) and gives the ``online`` it sends
on that connection, and the ``offline`` it says when it stops, the same stamp. So a seal's statuses are ordered by
(``ts``, ``online`` before ``offline``) — :func:`supersedes` — whoever receives them, whenever, and however often
the broker sends them again: an ``offline`` with the stamp of the stored ``online`` ends that connection; a status
with an older stamp is about a connection that is over. (Seals from before stamped their ``online`` with the moment
they sent it, later than their Will: a court orders those by that ``ts`` too, so the Will of such a seal's current
connection is taken for an older one's; the liveness check's silence rule still pages for it.)

A seal's stamps only grow: it stamps each connection after its last one, even if its clock went back (a reboot
without a real-time clock: ``seal_agent.connection_stamps``). The court bounds a stamp by its own clock: one later
than when it received the status + a skew is ordered as received (``server.ingest.statuses``).
"""

from __future__ import annotations

from datetime import datetime
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
    """Canonical bytes ``{"agent_version": ..., "state": ..., "ts": ...}``; ``ts``: the connection's stamp.

    The Last Will is built when the seal connects, so its ``ts`` is the connection time, not the time of loss.
    """
    return canonical_json({"state": state.value, "ts": ts or utc_now_ms(), "agent_version": agent_version})


def supersedes(state: SealStatus, ts: datetime, stored_state: str | None, stored_ts: datetime | None) -> bool:
    """Does a status (``state``, ``ts``) replace the stored one? Yes unless its connection stamp is older, or it is
    the ``online`` of the connection whose ``offline`` is stored (the same stamp)."""
    if stored_ts is None or ts > stored_ts:
        return True
    return ts == stored_ts and (state is SealStatus.OFFLINE or stored_state == SealStatus.ONLINE.value)


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
