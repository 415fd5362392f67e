"""Your in-app inbox (``/inbox``), of the cases you are assigned to now: what the court's workflows told you — a
removal request filed, taken up, decided, its seals disarmed, the seizure lifted — in your language, newest first,
each marked read by you alone (:mod:`server.notify.inbox`, as ``GET /api/me/inbox`` and ``POST
/api/me/inbox/{id}/read``). A message about a removal request links to where its reader follows it: the debtor's
portal or the creditor's view."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Path, Response

from server.api.deps import SessionDep
from server.auth import access
from server.auth.access import Permission
from server.auth.models import User
from server.core.base import utc_now
from server.notify.inbox import list_messages, mark_read
from server.notify.models import InboxMessage
from server.web.deps import SignedInPage
from server.web.portal_signin import see_other
from server.web.removal_view import case_url
from server.web.routing import PageRoute

router = APIRouter(route_class=PageRoute, include_in_schema=False)

MessageId = Annotated[int, Path(ge=1, le=2**63 - 1)]
MAX_MESSAGES = 100
REQUEST_REF = "removal-request:"


@dataclass(frozen=True)
class MessageLine:
    message: InboxMessage
    link: str  # where to follow what it is about, or ""


def message_link(user: User, message: InboxMessage) -> str:
    """The page a party follows the message's request on (``#request-<id>`` of its case); "" for none."""
    if not message.ref.startswith(REQUEST_REF) or not message.ref[len(REQUEST_REF) :].isdigit():
        return ""
    anchor = f"#request-{message.ref[len(REQUEST_REF) :]}"
    if access.has_permission(user, Permission.REMOVAL_FILE):
        return case_url(message.case_no, "/portal") + anchor
    if access.has_permission(user, Permission.REMOVAL_COMMENT):
        return case_url(message.case_no, "/creditor") + anchor
    return ""


@router.get("/inbox")
def inbox_page(page: SignedInPage, session: SessionDep) -> Response:
    """Your messages, newest first."""
    user = page.user
    assert user is not None
    rows = list_messages(session, user_id=user.id, visible=access.visible_case_nos(session, user), limit=MAX_MESSAGES)
    lines = [MessageLine(row, message_link(user, row)) for row in rows]
    return page.render("inbox.html", lines=lines, unread=sum(1 for row in rows if row.read_at is None))


@router.post("/inbox/{message_id}/read")
def inbox_read(page: SignedInPage, session: SessionDep, message_id: MessageId) -> Response:
    """Mark one of your messages read."""
    user = page.user
    assert user is not None
    visible = access.visible_case_nos(session, user)
    row = mark_read(session, user_id=user.id, visible=visible, message_id=message_id, now=utc_now())
    session.commit()
    if page.request.headers.get("HX-Request") != "true":
        return see_other(f"/inbox#message-{message_id}")
    return page.render("inbox/_message.html", line=MessageLine(row, message_link(user, row)))
