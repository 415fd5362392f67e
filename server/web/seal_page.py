"""The seal page (``/seals/{device_id}``): its state, its health from its latest heartbeat, its connection history,
its bindings and its latest events, and — for the roles that print it — its notice (``GET /seals/{id}/notice.pdf``:
the API's PDF, or a page saying why it cannot be printed). Live: the view ``seal`` sends the page's state again
when the seal sends something."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response
from sqlalchemy.orm import Session

from server.api.deps import SessionDep
from server.api.notices import notice_pdf
from server.api.params import DeviceIdPath
from server.auth import access
from server.auth.access import Permission
from server.auth.models import User
from server.config import Settings
from server.core.base import utc_now
from server.core.live import Change
from server.notices.facts import missing_facts
from server.notices.service import notice_facts
from server.seals.models import Seal
from server.seals.registry import is_online
from server.web.deps import SignedInPage
from server.web.live import LiveRender, live_view, take_digest
from server.web.routing import PageRoute
from server.web.seal_model import binding_lines, connection_history, health, recent_events
from server.web.templating import render_text

router = APIRouter(route_class=PageRoute, include_in_schema=False)


def _values(session: Session, user: User, seal: Seal, settings: Settings) -> dict[str, Any]:
    now = utc_now()
    heartbeat, items = health(session, user, seal)
    may_print = access.has_permission(user, Permission.NOTICE_PRINT) and seal.case_no is not None
    return {
        "seal": seal,
        "now": now,
        "online": is_online(seal, now=now, offline_after_s=settings.offline_after_s),
        "heartbeat": heartbeat,
        "health": items,
        "history": connection_history(session, user, seal),
        "bindings": binding_lines(session, user, seal),
        "events": recent_events(session, user, seal),
        "may_events": access.has_permission(user, Permission.EVENT_READ),
        "may_print": may_print,
        # what the notice cannot go without and the case lacks: said before anyone tries to print it
        "notice_missing": missing_facts(notice_facts(session, seal=seal)) if may_print else (),
        "may_case": seal.case_no is not None and access.can_see_case(session, user, seal.case_no),
    }


@router.get("/seals/{device_id}")
def seal_page(page: SignedInPage, session: SessionDep, device_id: DeviceIdPath) -> Response:
    """One seal: state, health from its heartbeat, connection history, bindings, latest events, its notice."""
    assert page.user is not None
    take_digest(page, session, "seal", device_id=device_id)
    seal = access.seal_for(session, page.user, device_id, Permission.SEAL_STATUS)
    values = _values(session, page.user, seal, page.context.settings)
    return page.render("seal.html", live_url=page.live_url("seal", device_id=seal.device_id), **values)


@router.get("/seals/{device_id}/notice.pdf")
def seal_notice_page(page: SignedInPage, session: SessionDep, device_id: DeviceIdPath) -> Response:
    """The seal's notice to print, as ``GET /api/seals/{id}/notice.pdf`` gives it; a refusal (a fact the notice's
    font cannot draw, the seal not bound) is a page in the reader's language, not the API's JSON."""
    assert page.user is not None
    seal = access.seal_for(session, page.user, device_id, Permission.NOTICE_PRINT)
    return notice_pdf(page.context, page.user, seal.device_id)


@live_view("seal", whole=True)
def seal_changes(live: LiveRender, changes: list[Change] | None) -> dict[str, str]:
    """The seal page's state again when the seal sent something (or its alarms, commands changed)."""
    device_id = live.params.get("device_id", "")
    if changes is not None and not any(c.device_id == device_id for c in changes):
        return {}
    seal = access.seal_for(live.session, live.user, device_id, Permission.SEAL_STATUS)
    values = _values(live.session, live.user, seal, live.context.settings)
    return {"state": render_text("seal/_live.html", {"t": live.t, "lang": live.t.language, "oob": True, **values})}
