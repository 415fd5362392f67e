"""One-use ids of the pages' command forms: a form sent twice sends one command.

The CSRF token is the session's, the same in every form, so it tells nothing of a form sent twice (a double click,
the back button and "send again", a slow answer clicked once more); and a command to a seal is a signed message
that sounds a siren or takes a picture. So each command form carries its own id (:func:`command_form_id`, rendered
in by the template): a digest of the session's CSRF token, the seal, and the last command this user sent it — the
same on every rendering until that user sends the seal a command (the live view's digests of the page stay put),
another after. The first use of an id is written down (:class:`~server.commands.models.CommandForm`, in the
command's own transaction; a unique key, so two uses at once are one). A form whose id is used already, or is not
the seal's current one, sends nothing: within the command's lifetime it is answered as the first time; later, or
used by someone else, it is refused (409) and the page is reloaded, whose fresh form sends a new command. Rows older
than :data:`KEPT` are deleted (their forms are not the current ones any more).
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from typing import Annotated

from fastapi import Form
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from server.auth.models import User
from server.commands.models import CommandForm, CourtCommand
from server.core.court_clock import court_clock
from server.core.unique import unique_or
from server.errors import Conflict

#: How long the use of a form id is kept.
KEPT = timedelta(days=1)
#: The form field.
FormId = Annotated[str, Form(min_length=32, max_length=32, pattern=r"^[0-9a-f]{32}$")]


class _Used(Exception):
    """The form's id is written down already."""


def command_form_id(csrf_token: str, device_id: str, last_command_id: int) -> str:
    """The id of a command form to ``device_id`` while the last command its user sent it is ``last_command_id``."""
    text = f"court-seal command form\x00{csrf_token}\x00{device_id}\x00{last_command_id}"
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def last_command_ids(session: Session, *, user: User, device_ids: list[str]) -> dict[str, int]:
    """The id of the last command ``user`` sent each of these seals (none: not in the answer)."""
    query = (
        select(CourtCommand.device_id, func.max(CourtCommand.id))
        .where(CourtCommand.issued_by == user.id, CourtCommand.device_id.in_(device_ids))
        .group_by(CourtCommand.device_id)
    )
    return {device_id: int(last) for device_id, last in session.execute(query)}


def first_use(
    session: Session, *, user: User, csrf_token: str, device_id: str, form_id: str, ttl: timedelta, now: datetime
) -> CommandForm | None:
    """Write down the use of ``form_id`` (the row, for the caller to set its command); ``None`` if the same form was
    used by ``user`` within ``ttl``: answer as the first time, sending nothing. :class:`Conflict` for a form used
    before that (or by another), or not the seal's current one (the page is old)."""
    session.execute(delete(CommandForm).where(CommandForm.used_at < now - KEPT))
    last = last_command_ids(session, user=user, device_ids=[device_id]).get(device_id, 0)
    if form_id == command_form_id(csrf_token, device_id, last):
        row = CommandForm(form_id=form_id, user_id=user.id, used_at=now)
        try:
            with unique_or(session, _Used):  # the same form twice at once: the second waits for the first
                session.add(row)
                session.flush()
            return row
        except _Used:
            pass
    first = session.get(CommandForm, form_id, populate_existing=True)
    if first is not None and first.user_id == user.id and now - first.used_at <= ttl:
        return None
    sent = f"已于 {court_clock(first.used_at)} 发送过" if first is not None else "已过期"
    raise Conflict(
        f"此表单{sent}，未再次发送；如需再发，请刷新页面。 / This form was sent already, or its page is too old: "
        "nothing was sent again; reload the page to send another."
    )


def sent_with(row: CommandForm, command: CourtCommand) -> None:
    row.command_id = command.id
