"""Events: the verified event log of a case or of a seal, filtered by type and time, newest first, in pages."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from pydantic import StringConstraints
from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from server.api.deps import ContextDep, CurrentUser, SessionDep, audit_read, case_with, seal_with
from server.api.params import Before
from server.api.routing import ValidatedRoute
from server.api.schemas import ONE_LINE, EventPage, EventPublic, Moment, SealEventPage
from server.auth.access import Permission, case_filter
from server.evidence.models import NOT_HEARTBEAT, Event
from server.seals.models import Case, Seal

router = APIRouter(tags=["events"], route_class=ValidatedRoute)

MAX_PAGE = 500
MAX_TYPES = 32
EventTypeName = Annotated[str, StringConstraints(min_length=1, max_length=32, pattern=ONE_LINE)]


class EventFilter:
    """Query parameters shared by the event routes."""

    def __init__(
        self,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE, description="Events per page.")] = 50,
        before: Before = None,
        type: Annotated[
            list[EventTypeName] | None,
            Query(max_length=MAX_TYPES, description="Only events of these types (repeat the parameter)."),
        ] = None,
        since: Annotated[
            Moment | None, Query(description="Only events that happened at or after this time (seal's clock).")
        ] = None,
        until: Annotated[
            Moment | None, Query(description="Only events that happened before this time (seal's clock).")
        ] = None,
    ) -> None:
        self.limit, self.before, self.types, self.since, self.until = limit, before, type, since, until

    def audited(self, page: Sequence[EventPublic]) -> dict[str, Any]:
        """What the audit entry of a page says: the filters and the events shown."""
        return {
            "limit": self.limit,
            "before": self.before,
            "types": self.types,
            "since": self.since.isoformat() if self.since is not None else None,
            "until": self.until.isoformat() if self.until is not None else None,
            "events": len(page),
            "first_id": page[-1].id if page else None,
            "last_id": page[0].id if page else None,
        }

    def page(self, session: Session, query: Select[Event]) -> tuple[list[EventPublic], int | None]:
        if self.before is not None:
            query = query.where(Event.id < self.before)
        if self.types:
            query = query.where(Event.type.in_(self.types))
            if "heartbeat" not in self.types:  # said again as the partial index's predicate: a case's query takes it
                query = query.where(NOT_HEARTBEAT)  # and walks none of the case's heartbeats (migration 0029)
        if self.since is not None:
            query = query.where(Event.ts >= self.since)
        if self.until is not None:
            query = query.where(Event.ts < self.until)
        rows = session.scalars(query.order_by(Event.id.desc()).limit(self.limit + 1)).all()
        page = rows[: self.limit]
        return _public(page), page[-1].id if len(rows) > self.limit else None


Filters = Annotated[EventFilter, Depends()]


@router.get("/cases/{case_no:path}/events", responses={404: {"description": "No such case, or not one of yours"}})
def list_case_events(
    case: Annotated[Case, Depends(case_with(Permission.EVENT_READ))],
    user: CurrentUser,
    session: SessionDep,
    context: ContextDep,
    filters: Filters,
) -> EventPage:
    """The case's events, newest first, in pages; filter by type and time (audited ``evidence.events``)."""
    events, next_before = filters.page(session, select(Event).where(Event.case_no == case.case_no))
    details = filters.audited(events)
    audit_read(context, user, action="evidence.events", target=case.case_no, case_no=case.case_no, details=details)
    return EventPage(case_no=case.case_no, events=events, next_before=next_before)


@router.get("/seals/{device_id}/events", responses={404: {"description": "No such seal, or not one of yours"}})
def list_seal_events(
    seal: Annotated[Seal, Depends(seal_with(Permission.EVENT_READ))],
    user: CurrentUser,
    session: SessionDep,
    context: ContextDep,
    filters: Filters,
) -> SealEventPage:
    """The seal's events in the cases you may see (a seal moves between cases), newest first, in pages (audited
    ``evidence.events``, with the case when the page's events are of one case)."""
    query = select(Event).where(Event.device_id == seal.device_id, case_filter(session, user, Event.case_no))
    events, next_before = filters.page(session, query)
    cases = sorted({event.case_no for event in events})
    details = {"device_id": seal.device_id, "cases": cases, **filters.audited(events)}
    case_no = cases[0] if len(cases) == 1 else None
    audit_read(context, user, action="evidence.events", target=seal.device_id, case_no=case_no, details=details)
    return SealEventPage(device_id=seal.device_id, events=events, next_before=next_before)


def _public(rows: Sequence[Event]) -> list[EventPublic]:
    return [
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
        for row in rows
    ]
