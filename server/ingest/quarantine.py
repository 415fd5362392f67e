"""Reading the quarantine: the messages the ingest refused, for the clerk (``/api/quarantine``, ``seal-server
quarantine``). The bytes came from whoever held a seal's MQTT account and may be anything: they are shown only as hex,
base64 or a preview of printable ASCII, never decoded.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from server.errors import found
from server.ingest.models import QuarantineCount, QuarantinedMessage

PREVIEW_BYTES = 64


@dataclass(frozen=True)
class QuarantineFilter:
    """Which quarantined messages to list: all of them by default, newest first."""

    reason: str | None = None
    device_id: str | None = None
    since: datetime | None = None
    before: int | None = None  # paging cursor: only ids below this
    limit: int = 50


def list_quarantine(session: Session, *, where: QuarantineFilter) -> tuple[list[QuarantinedMessage], int | None]:
    """A page of quarantined messages, newest first, and the ``before`` of the next page (``None`` on the last)."""
    query = select(QuarantinedMessage)
    if where.reason is not None:
        query = query.where(QuarantinedMessage.reason == where.reason)
    if where.device_id is not None:
        query = query.where(QuarantinedMessage.device_id == where.device_id)
    if where.since is not None:  # a row stands for every copy of its bytes: the last copy counts
        last = func.coalesce(QuarantinedMessage.last_received_at, QuarantinedMessage.received_at)
        query = query.where(last >= where.since)
    if where.before is not None:
        query = query.where(QuarantinedMessage.id < where.before)
    rows = list(session.scalars(query.order_by(QuarantinedMessage.id.desc()).limit(where.limit + 1)))
    page = rows[: where.limit]
    return page, page[-1].id if len(rows) > where.limit else None


def list_counts(session: Session, *, where: QuarantineFilter) -> list[QuarantineCount]:
    """The refused messages counted without rows (past their account's ``quarantine_seal_rows`` per window:
    :mod:`.refusal_count`), newest window first, at most ``where.limit`` rows; ``before`` is not applied."""
    query = select(QuarantineCount)
    if where.reason is not None:
        query = query.where(QuarantineCount.reason == where.reason)
    if where.device_id is not None:
        query = query.where(QuarantineCount.device_id == where.device_id)
    if where.since is not None:
        query = query.where(QuarantineCount.last_received_at >= where.since)
    order = (QuarantineCount.window_start.desc(), QuarantineCount.device_id, QuarantineCount.reason)
    return list(session.scalars(query.order_by(*order).limit(where.limit)))


def get_quarantined(session: Session, *, message_id: int) -> QuarantinedMessage:
    return found(session.get(QuarantinedMessage, message_id), f"no quarantined message {message_id}")


def hex_preview(raw: bytes, length: int = PREVIEW_BYTES) -> str:
    """The first ``length`` bytes in lowercase hex, two digits per byte separated by spaces."""
    return raw[:length].hex(" ")


def ascii_preview(raw: bytes, length: int = PREVIEW_BYTES) -> str:
    """The first ``length`` bytes as printable ASCII, every other byte (control, non-ASCII) shown as ``.``."""
    return "".join(chr(b) if 0x20 <= b < 0x7F else "." for b in raw[:length])
