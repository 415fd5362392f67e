"""The court's live feed on the wire: one topic of the court's own broker, one small JSON message per batch of changes.

A message names its sender (a random id per process and start) and numbers its messages ``1, 2, 3…``, so a receiver
that sees a number skipped knows that it missed changes (the sender could not hand them to the broker, or the broker
dropped them) and says "gap" rather than leave the pages with a silent hole. It carries :class:`Change`\\ s only —
what kind of thing changed, which seal, which case — never data: each stream reads the database with its user's
access checks. Only the court's account may read or write the topic (:func:`server.seals.broker_files.acl_text`).

    {"v": 1, "sender": "3f9c0a1b2c3d4e5f", "seq": 7,
     "changes": [{"what": "event", "device_id": "seal-0001", "case_no": null}]}
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from server.core.live import Change
from server.errors import ServerError

#: The feed's topic: outside ``seal/v1/…``, so no seal's ACL pattern (``seal/v1/%u/…``) reaches it.
FEED_TOPIC = "court/v1/live"
#: At most this many changes per message; a sender splits a larger batch (each part numbered).
MAX_CHANGES = 500
#: A message larger than this is refused unread.
MAX_BYTES = 128 * 1024


class MalformedFeedMessage(ServerError, ValueError):
    """A feed message that is not what :func:`encode` writes."""


class _WireChange(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    what: str = Field(pattern=r"^[a-z_]{1,32}$")
    device_id: str | None = Field(None, min_length=1, max_length=64)
    case_no: str | None = Field(None, min_length=1, max_length=64)


class FeedMessage(BaseModel):
    """One message of the feed: ``seq`` numbers the messages of ``sender``, from 1 without a hole."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    v: Literal[1]
    sender: str = Field(pattern=r"^[0-9a-f]{8,32}$")
    seq: int = Field(ge=1, le=2**53)
    changes: tuple[_WireChange, ...] = Field(max_length=MAX_CHANGES)

    @property
    def live_changes(self) -> list[Change]:
        return [Change(c.what, c.device_id, c.case_no) for c in self.changes]


def encode(sender: str, seq: int, changes: list[Change]) -> bytes:
    """The bytes of message ``seq`` of ``sender`` (at most :data:`MAX_CHANGES` changes)."""
    wire = [_WireChange(what=c.what, device_id=c.device_id, case_no=c.case_no) for c in changes]
    return FeedMessage(v=1, sender=sender, seq=seq, changes=tuple(wire)).model_dump_json().encode("utf-8")


def decode(payload: bytes) -> FeedMessage:
    """The message in ``payload``; raise :class:`MalformedFeedMessage` saying why it is not one."""
    if len(payload) > MAX_BYTES:
        raise MalformedFeedMessage(f"{len(payload)} bytes, more than {MAX_BYTES}")
    try:
        return FeedMessage.model_validate_json(payload)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "(message)"
        raise MalformedFeedMessage(f"{where}: {first['msg']}") from None
