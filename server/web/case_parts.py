"""The parts of the case page, shared by its page (:mod:`server.web.case_page`: the page, its live view) and its
forms (:mod:`server.web.case_actions`: each answers an htmx request with the part it changed). Each part is one
element with a fixed id, which a live update replaces (``hx-swap-oob``); the timeline takes new rows at its top.

Parts: ``status`` (the case and its status), ``seals``, ``alarms``, ``commands``, ``removal``; the timeline is
rendered by the page and, in live updates, by :func:`timeline_update`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from markupsafe import Markup
from sqlalchemy.orm import Session

from server.alarms.state import AlarmState
from server.auth import access
from server.auth.access import Permission
from server.auth.models import User
from server.config import Settings
from server.core.base import utc_now
from server.seals.models import Case
from server.web.case_model import (
    PAGE_COMMANDS,
    TIMELINE_MAX,
    alarm_cards,
    command_rows,
    events_after,
    former_seals,
    live_alarm_count,
    seal_rows,
    timeline,
)
from server.web.form_ids import last_command_ids
from server.web.i18n import Translator
from server.web.removal_model import request_cards
from server.web.security import CSRF_FIELD
from server.web.templating import render_text

#: The parts a live update or a form's answer replaces, each its template under ``templates/case/``.
PARTS = ("status", "seals", "alarms", "commands", "removal")


@dataclass(frozen=True)
class Allowed:
    """What the user's role may see and do on the case page (the policy is :mod:`server.auth.access`)."""

    events: bool
    pictures: bool
    alarms: bool
    commands: bool
    send: bool
    removal: bool
    notice: bool

    @classmethod
    def of(cls, user: User) -> Allowed:
        def may(permission: Permission) -> bool:
            return access.has_permission(user, permission)

        return cls(
            events=may(Permission.EVENT_READ),
            pictures=may(Permission.SNAPSHOT_READ),
            alarms=may(Permission.ALARM_READ),
            commands=may(Permission.SEAL_STATUS),
            send=may(Permission.COMMAND_SEND),
            removal=may(Permission.REMOVAL_READ),
            notice=may(Permission.NOTICE_PRINT),
        )


def part_values(
    session: Session, user: User, case: Case, settings: Settings, parts: tuple[str, ...] = PARTS
) -> dict[str, Any]:
    """What the parts named in ``parts`` show, for ``user``."""
    now = utc_now()
    allowed = Allowed.of(user)
    values: dict[str, Any] = {"case": case, "case_no": case.case_no, "allowed": allowed, "now": now}
    if "seals" in parts:
        values["seals"] = seal_rows(session, case.case_no, now=now, offline_after_s=settings.offline_after_s)
        values["former"] = former_seals(session, case.case_no)
    if "alarms" in parts:
        values["alarms"] = alarm_cards(session, user, case.case_no)
        shown = sum(1 for card in values["alarms"] if card.alarm.state != AlarmState.CLOSED.value)
        values["alarms_left_out"] = live_alarm_count(session, user, case.case_no) - shown
    if "commands" in parts:
        values["commands"] = command_rows(session, user, case.case_no)
        values["command_seals"] = (
            values["seals"]
            if "seals" in values
            else seal_rows(session, case.case_no, now=now, offline_after_s=settings.offline_after_s)
        )
        values["page_commands"] = PAGE_COMMANDS
        devices = [row.seal.device_id for row in values["command_seals"]]
        values["last_command_ids"] = last_command_ids(session, user=user, device_ids=devices)
    if "removal" in parts:
        values["requests"] = request_cards(session, user, case.case_no, now=now)
    return values


def render_parts(values: dict[str, Any], *, t: Translator, csrf_token: str, parts: tuple[str, ...], oob: bool) -> str:
    """The HTML of ``parts`` (each its element with its id; ``oob``: marked for an out-of-band swap)."""
    context = {**values, "t": t, "lang": t.language, "csrf_field": CSRF_FIELD, "csrf_token": csrf_token, "oob": oob}
    return "\n".join(render_text(f"case/_{part}.html", context) for part in parts if _shown(part, values["allowed"]))


def _shown(part: str, allowed: Allowed) -> bool:
    return {"alarms": allowed.alarms, "commands": allowed.commands, "removal": allowed.removal}.get(part, True)


def timeline_update(
    session: Session,
    case: Case,
    *,
    t: Translator,
    allowed: Allowed,
    after: int | None,
    now: datetime,
    shown: dict[int, str],
) -> tuple[str, int | None]:
    """The timeline's rows a live update sends, as an element that the page's timeline takes at its top (replacing
    the rows it has, adding the others), and the newest id: of the newest page and whatever came after ``after``,
    only the rows the browser does not have as they are now (``shown``: the digests of the rows it has, by event id;
    updated) — none if it has them all, so that an update says nothing when nothing on the page changed. When more
    came than an update carries, the timeline whole again (its newest page), which replaces it."""
    if not allowed.events:
        return "", after
    rows = events_after(session, case.case_no, after, pictures=allowed.pictures)
    if rows is None:
        return timeline_whole(session, case, t=t, allowed=allowed, after=after, now=now, shown=shown)
    if not rows:
        return "", after
    context = {"t": t, "lang": t.language, "case_no": case.case_no, "allowed": allowed, "now": now}
    top = max(rows[0].event.id, after or 0)
    rendered = [(row.event.id, render_text("case/_event.html", {**context, "row": row})) for row in rows]
    fresh = [Markup(html) for event_id, html in rendered if shown.get(event_id) != _digest(html)]
    shown.clear()  # the rows a later update may change: those of the newest page (and any newer)
    shown.update((event_id, _digest(html)) for event_id, html in rendered)
    if not fresh:
        return "", top
    return render_text("case/_timeline_update.html", {**context, "rows_html": fresh}), top


def timeline_whole(
    session: Session,
    case: Case,
    *,
    t: Translator,
    allowed: Allowed,
    after: int | None,
    now: datetime,
    shown: dict[int, str],
) -> tuple[str, int | None]:
    """The timeline whole (its newest page, replacing the page's), and its newest id (or ``after``); ``shown``
    becomes the digests of its rows."""
    if not allowed.events:
        return "", after
    page, next_before = timeline(session, case.case_no, pictures=allowed.pictures)
    context = {"t": t, "lang": t.language, "case_no": case.case_no, "allowed": allowed, "now": now}
    shown.clear()
    shown.update((row.event.id, _digest(render_text("case/_event.html", {**context, "row": row}))) for row in page)
    values = {**context, "rows": page, "next_before": next_before, "timeline_max": TIMELINE_MAX, "oob": True}
    return render_text("case/_timeline.html", values), max([after or 0, *(row.event.id for row in page[:1])]) or None


def _digest(html: str) -> str:
    return hashlib.sha256(html.encode()).hexdigest()[:16]
