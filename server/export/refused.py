"""The pictures the court received and refused: quarantine rows on the snapshot topic of a picture an exported event
names, from a seal whose event names it (``docs/evidence.md``, "Snapshots").

The ingest refuses a picture for what its bytes are (``invalid_snapshot``: not a JPEG it can read, or larger than
the protocol allows; ``oversized``: larger than a message may be; ``snapshot_mismatch``: bytes that do not hash to
the topic's name), keeps them in the quarantine and receipts them, so the seal deletes its copy. A row whose bytes
hash to the picture's name holds what the seal signed for: the bundle says the court refused it
(``refused_by_court``) and carries the bytes (``refused/<sha256>.jpg``) when the quarantine kept them whole
(``kept``: not a row cut at 256 KiB, nor one the database took only without its bytes). A row
whose bytes hash to another name was received on the picture's topic but is not the picture: listed, and the picture
is still one the court never received.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from seal_protocol import utc_now_ms
from seal_protocol.errors import InvalidTopic
from seal_protocol.topics import snapshot_topic
from server.ingest.models import QuarantinedMessage

JsonDict = dict[str, Any]

#: Topics asked for in one query (SQLite allows some 32,000 parameters; far fewer keep the plan simple).
_CHUNK = 500


@dataclass
class Refused:
    """Per picture, its refused copies (``refused`` of its ``snapshots.jsonl`` line, sorted); and the whole bytes
    of those that are the picture, by SHA-256."""

    entries: dict[str, list[JsonDict]] = field(default_factory=dict)
    pictures: dict[str, bytes] = field(default_factory=dict)

    def is_picture(self, sha256: str) -> bool:
        """Whether the court received bytes that hash to the picture's name and refused them."""
        return any(entry["sha256"] == sha256 for entry in self.entries.get(sha256, ()))


def refused_pictures(session: Session, named: Mapping[str, Iterable[str]]) -> Refused:
    """The quarantine rows on the snapshot topic of each picture of ``named`` (sha256 -> the seals whose exported
    events name it) from one of those seals."""
    wanted: dict[str, tuple[str, str]] = {}  # topic -> (sha256, device_id)
    for sha, seals in named.items():
        for device_id in seals:
            try:
                wanted[snapshot_topic(device_id, sha)] = (sha, device_id)
            except InvalidTopic:  # a signed name that is no SHA-256: no topic carries it
                continue
    found = Refused()
    topics = sorted(wanted)
    for start in range(0, len(topics), _CHUNK):
        query = select(QuarantinedMessage).where(QuarantinedMessage.topic.in_(topics[start : start + _CHUNK]))
        for row in session.scalars(query):
            sha, device_id = wanted[row.topic]
            if row.device_id != device_id:
                continue
            kept = _kept(row)
            found.entries.setdefault(sha, []).append(_entry(row, device_id, kept))
            if kept and row.sha256 == sha:
                found.pictures[sha] = bytes(row.raw)
    for entries in found.entries.values():
        entries.sort(key=lambda e: (e["received_at"], e["device_id"], e["reason"], e["sha256"] or ""))
    return found


def _kept(row: QuarantinedMessage) -> bool:
    """Whether the row holds the message's bytes whole: all ``size`` of them (not cut at the quarantine's limit, nor
    left out because the database refused the row with them), hashing to its ``sha256`` when it has one."""
    whole = len(row.raw) == row.size
    return whole and (row.sha256 is None or hashlib.sha256(row.raw).hexdigest() == row.sha256)


def _entry(row: QuarantinedMessage, device_id: str, kept: bool) -> JsonDict:
    return {
        "copies": row.copies,
        "device_id": device_id,
        "kept": kept,
        "reason": row.reason,
        "received_at": utc_now_ms(row.received_at),
        "sha256": row.sha256,
        "size": row.size,
    }
