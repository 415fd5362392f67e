"""The quarantine: messages the ingest refused — what arrived, from which seal account and topic, when, and why
(clerk only). The bytes are never decoded: a page shows a hex and ASCII preview, one message its bytes in base64."""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field

from server.api.deps import SessionDep, requires
from server.api.params import Before, DeviceIdQuery, RowIdPath
from server.api.routing import ValidatedRoute
from server.api.schemas import Moment
from server.auth.access import Permission
from server.auth.models import User
from server.ingest.models import QuarantinedMessage
from server.ingest.quarantine import (
    PREVIEW_BYTES,
    QuarantineFilter,
    ascii_preview,
    get_quarantined,
    hex_preview,
    list_counts,
    list_quarantine,
)

router = APIRouter(prefix="/quarantine", tags=["quarantine"], route_class=ValidatedRoute)

MAX_PAGE = 200
QuarantineReader = Annotated[User, Depends(requires(Permission.QUARANTINE_READ))]


class QuarantinedPublic(BaseModel):
    id: int = Field(description="Increasing; the paging cursor.")
    received_at: datetime = Field(description="When it (its first copy) arrived.")
    copies: int = Field(description="How many times these same bytes came on this topic for this reason.")
    last_received_at: datetime | None = Field(description="When the last copy came; null if only one did.")
    sha256: str | None = Field(description="SHA-256 of the whole message as received (null on old rows).")
    topic: str = Field(description="The MQTT topic it arrived on.")
    device_id: str | None = Field(
        description="The seal account: the device id its topic seal/v1/<device_id>/… is under, even if the rest of the "
        "topic did not parse; null if it is under none."
    )
    reason: str = Field(description="Why it was refused: invalid_json, bad_signature, broken_chain, …")
    detail: str = Field(description="What exactly was wrong.")
    size: int = Field(description="Bytes received.")
    stored_size: int = Field(description="Bytes kept (a long message is cut).")
    preview_hex: str = Field(description=f"The first {PREVIEW_BYTES} bytes kept, hex.")
    preview_ascii: str = Field(description=f"The first {PREVIEW_BYTES} bytes kept; not printable ASCII shown as '.'.")


class QuarantinedMessagePublic(QuarantinedPublic):
    raw_base64: str = Field(description="Every byte kept, base64 (standard alphabet, padded).")


class QuarantinePage(BaseModel):
    messages: list[QuarantinedPublic] = Field(description="Newest first.")
    next_before: int | None = Field(description="Pass as ?before= for the next (older) page; null on the last page.")


#: ``?reason=``: only the messages (or counts) refused for this reason.
ReasonQuery = Annotated[
    str | None, Query(min_length=1, max_length=32, pattern=r"^[a-z_]+$", description="Only this reason.")
]


@router.get("")
def read_quarantine(
    _clerk: QuarantineReader,
    session: SessionDep,
    reason: ReasonQuery = None,
    device_id: DeviceIdQuery = None,
    since: Annotated[
        Moment | None, Query(description="Only messages (a copy of which) arrived at or after this.")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE, description="Messages per page.")] = 50,
    before: Before = None,
) -> QuarantinePage:
    """Messages the ingest refused, newest first, in pages; filter by reason, seal and time (clerk only)."""
    where = QuarantineFilter(reason=reason, device_id=device_id, since=since, before=before, limit=limit)
    rows, next_before = list_quarantine(session, where=where)
    return QuarantinePage(messages=[_public(row) for row in rows], next_before=next_before)


class QuarantineCountPublic(BaseModel):
    device_id: str = Field(description="The seal account, as in the quarantine; empty for topics under no device id.")
    reason: str = Field(description="Why they were refused.")
    window_start: datetime = Field(description="The start of the window ([ingest] quarantine_window_s).")
    count: int = Field(description="Refused messages counted without a row of their own: bytes not kept.")
    bytes: int = Field(description="Their sizes as received, added up.")
    first_received_at: datetime
    last_received_at: datetime


@router.get("/counts")
def read_quarantine_counts(
    _clerk: QuarantineReader,
    session: SessionDep,
    reason: ReasonQuery = None,
    device_id: DeviceIdQuery = None,
    since: Annotated[
        Moment | None, Query(description="Only counts whose last message arrived at or after this.")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE, description="Rows.")] = 50,
) -> list[QuarantineCountPublic]:
    """Refused messages counted without rows, past their seal account's quarantine_seal_rows per window: per
    account, reason and window, newest window first (clerk only)."""
    where = QuarantineFilter(reason=reason, device_id=device_id, since=since, limit=limit)
    return [
        QuarantineCountPublic(
            device_id=row.device_id,
            reason=row.reason,
            window_start=row.window_start,
            count=row.count,
            bytes=row.bytes,
            first_received_at=row.first_received_at,
            last_received_at=row.last_received_at,
        )
        for row in list_counts(session, where=where)
    ]


@router.get("/{message_id}", responses={404: {"description": "No such quarantined message"}})
def read_quarantined(message_id: RowIdPath, _clerk: QuarantineReader, session: SessionDep) -> QuarantinedMessagePublic:
    """One refused message, with every byte kept (base64) (clerk only)."""
    row = get_quarantined(session, message_id=message_id)
    return QuarantinedMessagePublic(**_public(row).model_dump(), raw_base64=base64.b64encode(row.raw).decode("ascii"))


def _public(row: QuarantinedMessage) -> QuarantinedPublic:
    return QuarantinedPublic(
        id=row.id,
        received_at=row.received_at,
        copies=row.copies,
        last_received_at=row.last_received_at,
        sha256=row.sha256,
        topic=row.topic,
        device_id=row.device_id,
        reason=row.reason,
        detail=row.detail,
        size=row.size,
        stored_size=len(row.raw),
        preview_hex=hex_preview(row.raw),
        preview_ascii=ascii_preview(row.raw),
    )
