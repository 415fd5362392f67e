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

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from seal_protocol.envelope import parse_ts, utc_now_ms
from seal_protocol.errors import InvalidEnvelope
from seal_protocol.wirejson import canonical_json, loads_wire_json

#: A status message is tiny; anything larger is not one.
MAX_STATUS_BYTES = 1024
_FIELDS = {"agent_version", "state", "ts"}


class SealStatus(StrEnum):
    ONLINE = "online"
    OFFLINE = "offline"


_STORAGE_FIELDS = {"held", "reason", "since"}
#: A status's ``storage.held`` is at most this (a seal holds far fewer events in memory).
MAX_HELD = 10**9


class StorageFault(StrEnum):
    """Why a seal cannot store events: its ``storage.reason``."""

    READ_ONLY = "read_only"  # its filesystem refuses writes (a failing card the kernel remounted read-only)
    FULL = "full"  # no room left
    IO_ERROR = "io_error"  # any other refusal of its disk or database (I/O errors)


@dataclass(frozen=True, slots=True)
class StorageReport:
    """A seal's word that it cannot store events: why, how many events it holds in memory only, since when (its
    first refused commit, in the envelope's ``ts`` form)."""

    reason: StorageFault
    held: int
    since: str

    def wire(self) -> dict[str, Any]:
        return {"held": self.held, "reason": self.reason.value, "since": self.since}


@dataclass(frozen=True, slots=True)
class StatusMessage:
    """A decoded status message (:func:`decode_status_message`)."""

    state: SealStatus
    ts: str
    storage: StorageReport | None = None


def encode_status(
    state: SealStatus,
    *,
    agent_version: str | None = None,
    ts: str | None = None,
    storage: StorageReport | None = None,
) -> bytes:
    """Canonical bytes ``{"agent_version": ..., "state": ..., "ts": ...}``; ``ts``: the connection's stamp;
    ``storage``: the seal cannot store events (an ``online`` only).

    The Last Will is built when the seal connects, so its ``ts`` is the connection time, not the time of loss.
    """
    obj: dict[str, Any] = {"state": state.value, "ts": ts or utc_now_ms(), "agent_version": agent_version}
    if storage is not None:
        if state is not SealStatus.ONLINE:
            raise ValueError("only an online status carries a storage report")
        obj["storage"] = storage.wire()
    return canonical_json(obj)


def supersedes(state: SealStatus, ts: datetime, stored_state: str | None, stored_ts: datetime | None) -> bool:
    """Does a status (``state``, ``ts``) replace the stored one? Yes unless its connection stamp is older, or it is
    the ``online`` of the connection whose ``offline`` is stored (the same stamp)."""
    if stored_ts is None or ts > stored_ts:
        return True
    return ts == stored_ts and (state is SealStatus.OFFLINE or stored_state == SealStatus.ONLINE.value)


def decode_status(data: bytes) -> tuple[SealStatus, str]:
    """Return (state, ts) of a status message; raise :class:`InvalidEnvelope` if it is not exactly one."""
    message = decode_status_message(data)
    return message.state, message.ts


def decode_status_message(data: bytes) -> StatusMessage:
    """The status message ``data``; raise :class:`InvalidEnvelope` if it is not exactly one.

    Parsed as strictly as an envelope: wire JSON, exactly the three fields (an ``online`` may have a fourth,
    ``storage``: exactly ``held``, an integer 0 … :data:`MAX_HELD`, ``reason``, a :class:`StorageFault`, and
    ``since``, a ts), ``state`` one of the states, ``ts`` a real moment in the envelope's ``ts`` form,
    ``agent_version`` a string of at most 64 characters or null, and the bytes the canonical encoding of that object.
    """
    if len(data) > MAX_STATUS_BYTES:
        raise InvalidEnvelope(f"invalid status message: {len(data)} bytes, limit {MAX_STATUS_BYTES}", "oversized")
    try:
        obj = loads_wire_json(data, what="status message")
    except InvalidEnvelope as exc:
        raise InvalidEnvelope(f"invalid status message: {exc}", exc.code) from None
    if not isinstance(obj, dict) or obj.keys() - {"storage"} != _FIELDS:
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
    storage = _storage(obj["storage"], state) if "storage" in obj else None
    return StatusMessage(SealStatus(state), ts, storage)


def _storage(value: object, state: str) -> StorageReport:
    if state != SealStatus.ONLINE.value:
        raise InvalidEnvelope("invalid status message: only an online status carries storage")
    if not isinstance(value, dict) or value.keys() != _STORAGE_FIELDS:
        raise InvalidEnvelope(f"invalid status message: storage must have exactly the fields {sorted(_STORAGE_FIELDS)}")
    held, reason, since = value["held"], value["reason"], value["since"]
    if type(held) is not int or not 0 <= held <= MAX_HELD:
        raise InvalidEnvelope(f"invalid status message: storage.held must be an integer 0 … {MAX_HELD}")
    if type(reason) is not str or reason not in {r.value for r in StorageFault}:
        raise InvalidEnvelope(
            f"invalid status message: storage.reason must be one of {[r.value for r in StorageFault]}"
        )
    try:
        parse_ts(since)
    except (ValueError, TypeError) as exc:
        raise InvalidEnvelope(f"invalid status message: storage.since: {exc}") from None
    return StorageReport(StorageFault(reason), held, since)
