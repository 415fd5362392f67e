"""The retained ``status`` message: ``online`` when a seal connects, ``offline`` as its Last Will or on shutdown."""

from __future__ import annotations

import json
from enum import StrEnum

from seal_protocol.envelope import canonical_json, utc_now_ms
from seal_protocol.errors import InvalidEnvelope


class SealStatus(StrEnum):
    ONLINE = "online"
    OFFLINE = "offline"


def encode_status(state: SealStatus, *, agent_version: str | None = None, ts: str | None = None) -> bytes:
    """Canonical bytes ``{"agent_version": ..., "state": ..., "ts": ...}``.

    The Last Will is built when the seal connects, so its ``ts`` is the connection time, not the time of loss.
    """
    return canonical_json({"state": state.value, "ts": ts or utc_now_ms(), "agent_version": agent_version})


def decode_status(data: bytes) -> tuple[SealStatus, str | None]:
    """Return (state, ts) of a status message; raise :class:`InvalidEnvelope` if it is not one."""
    try:
        obj = json.loads(data.decode("utf-8"))
        return SealStatus(obj["state"]), obj.get("ts")
    except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise InvalidEnvelope(f"invalid status message: {exc}") from None
