"""Your in-app inbox: what the court's workflows told you (a removal request filed, decided, its seals disarmed)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field

from server.api.deps import CurrentUser, SessionDep
from server.api.params import Before, RowIdPath
from server.api.routing import ValidatedRoute
from server.auth.access import visible_case_nos
from server.core.base import utc_now
from server.notify.inbox import list_messages, mark_read

router = APIRouter(prefix="/me/inbox", tags=["inbox"], route_class=ValidatedRoute)

MAX_PAGE = 200


class InboxMessagePublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int = Field(description="Increasing; the paging cursor.")
    created_at: datetime
    kind: str = Field(description="What happened, e.g. removal.filed, removal.approved, removal.lifted.")
    case_no: str
    text_zh: str
    text_en: str
    ref: str = Field(description="What it is about, e.g. removal-request:12 (GET /api/removal-requests/12).")
    read_at: datetime | None


@router.get("")
def read_inbox(
    user: CurrentUser,
    session: SessionDep,
    unread: Annotated[bool, Query(description="Only messages not yet read.")] = False,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE, description="Messages per page.")] = 50,
    before: Before = None,
) -> list[InboxMessagePublic]:
    """Your messages, newest first: of the cases you are assigned to now."""
    visible = visible_case_nos(session, user)
    rows = list_messages(session, user_id=user.id, visible=visible, unread_only=unread, limit=limit, before=before)
    return [InboxMessagePublic.model_validate(row) for row in rows]


@router.post("/{message_id}/read", responses={404: {"description": "No such message of yours"}})
def read_message(message_id: RowIdPath, user: CurrentUser, session: SessionDep) -> InboxMessagePublic:
    """Mark one of your messages read."""
    visible = visible_case_nos(session, user)
    row = mark_read(session, user_id=user.id, visible=visible, message_id=message_id, now=utc_now())
    session.commit()
    return InboxMessagePublic.model_validate(row)
