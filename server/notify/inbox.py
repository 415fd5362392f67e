"""Each user's in-app inbox: messages written in the transaction of what they tell (a removal request filed,
decided, its seals disarmed), read and marked read by their addressee only, and only while the addressee may see
the message's case (``visible``: the case numbers they are assigned to now, ``None`` for a clerk's all): a user
taken off a case no longer reads what was said of it, and reads it again if put back. The caller commits."""

from __future__ import annotations

from collections.abc import Collection, Iterable
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from server.errors import NotFound
from server.notify.models import InboxMessage


def post_messages(
    session: Session,
    *,
    user_ids: Iterable[int],
    kind: str,
    case_no: str,
    text_zh: str,
    text_en: str,
    ref: str = "",
    now: datetime,
) -> list[InboxMessage]:
    """One message to each of ``user_ids`` (each once, whatever the repeats)."""
    rows = [
        InboxMessage(
            user_id=user_id, created_at=now, kind=kind, case_no=case_no, text_zh=text_zh, text_en=text_en, ref=ref
        )
        for user_id in dict.fromkeys(user_ids)
    ]
    session.add_all(rows)
    session.flush()
    return rows


def list_messages(
    session: Session,
    *,
    user_id: int,
    visible: Collection[str] | None,
    unread_only: bool = False,
    limit: int = 50,
    before: int | None = None,
) -> list[InboxMessage]:
    """The user's messages of the cases in ``visible`` (``None``: all), newest first."""
    query = select(InboxMessage).where(InboxMessage.user_id == user_id)
    if visible is not None:
        query = query.where(InboxMessage.case_no.in_(list(visible)))
    if unread_only:
        query = query.where(InboxMessage.read_at.is_(None))
    if before is not None:
        query = query.where(InboxMessage.id < before)
    return list(session.scalars(query.order_by(InboxMessage.id.desc()).limit(limit)))


def mark_read(
    session: Session, *, user_id: int, visible: Collection[str] | None, message_id: int, now: datetime
) -> InboxMessage:
    """Mark one of the user's messages read (a message of another user, or of a case not in ``visible``, does not
    exist for them)."""
    row = session.get(InboxMessage, message_id)
    if row is None or row.user_id != user_id or (visible is not None and row.case_no not in visible):
        raise NotFound(f"unknown message {message_id}")
    if row.read_at is None:
        row.read_at = now
        session.flush()
    return row
