"""Cases: the event log of one case."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from sqlalchemy import select

from server.api.deps import SessionDep
from server.models import Event
from server.registry import get_case
from server.schemas import EventPage, EventPublic

router = APIRouter(prefix="/cases", tags=["cases"])

MAX_PAGE = 500


# ":path" lets a case number hold any character, even an encoded "/"; case numbers like (2021)苏0214执1234号 arrive
# percent-encoded and are decoded before routing.
@router.get("/{case_no:path}/events")
def list_case_events(
    case_no: str,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE, description="Events per page.")] = 50,
    before: Annotated[int | None, Query(ge=1, description="Only events with an id below this (paging cursor).")] = None,
) -> EventPage:
    """The case's events, newest first, in pages."""
    get_case(session, case_no=case_no)
    query = select(Event).where(Event.case_no == case_no)
    if before is not None:
        query = query.where(Event.id < before)
    rows = session.scalars(query.order_by(Event.id.desc()).limit(limit + 1)).all()
    page = rows[:limit]
    events = [
        EventPublic(
            id=row.id,
            device_id=row.device_id,
            case_no=row.case_no,
            seq=row.seq,
            event_id=row.event_id,
            type=row.type,
            ts=row.ts,
            received_at=row.received_at,
            prev_hash=row.prev_hash,
            sig=row.sig,
            payload=row.payload,
            envelope=row.raw.decode("utf-8"),
        )
        for row in page
    ]
    return EventPage(case_no=case_no, events=events, next_before=page[-1].id if len(rows) > limit else None)
