"""The overview (``/``): counts, live alarms (open first, acknowledged from here with a note) and every seal the user
may see as a tile — kept current by the live view ``overview`` without a reload."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Response, status
from fastapi.responses import RedirectResponse
from sqlalchemy.orm import Session

from server.alarms.service import acknowledge_as, get_alarm
from server.api.deps import SessionDep
from server.auth import access
from server.auth.access import Permission
from server.auth.models import User
from server.config import Settings
from server.core.base import utc_now
from server.core.live import Change
from server.web.dashboard import (
    alarm_rows,
    alarms_signature,
    counts,
    live_alarm_total,
    rows_of,
    seal_tiles,
    visible_seals,
)
from server.web.deps import SignedInPage
from server.web.form_fields import Note
from server.web.live import LiveRender, live_view
from server.web.routing import PageRoute
from server.web.security import CSRF_FIELD
from server.web.templating import render_text

router = APIRouter(route_class=PageRoute, include_in_schema=False)

AlarmId = Annotated[int, Path(ge=1, le=2**63 - 1)]
#: The changes that bring seals to a user's overview or take them off it: a binding, a user's assignment to a case, a
#: removal (which releases the case's seals), a seal registered.
_SEALS_MOVE = frozenset({"binding", "assignment", "removal", "seal"})
#: The changes that bring a seal into the court's stock or take one out of it: a binding or an unbinding (one side of
#: it is always the stock; a lifting publishes one for each seal it releases), a seal registered (bound to none).
_STOCK_MOVES = frozenset({"binding", "seal"})


def _tiles_and_counts(
    session: Session, user: User, settings: Settings, device_ids: set[str] | None = None
) -> dict[str, Any]:
    """What the overview shows: counts, alarms, and the tiles of the visible seals (of ``device_ids`` only, if
    given); ``visible``: the device ids of every seal the user may see."""
    now = utc_now()
    every = visible_seals(session, user)
    shown = every if device_ids is None else [s for s in every if s.device_id in device_ids]
    offline_after_s = settings.offline_after_s
    tiles = seal_tiles(
        session, user, shown, now=now, offline_after_s=offline_after_s, grace_s=settings.alarms.offline_grace_s
    )
    return {
        "tiles": tiles,
        "counts": counts(session, user, every, now=now, offline_after_s=offline_after_s),
        "alarms": alarm_rows(session, user),
        "alarms_total": live_alarm_total(session, user),
        "grace_s": int(settings.alarms.offline_grace_s),
        "now": now,
        "visible": {s.device_id for s in every},
        "order": {s.device_id: i for i, s in enumerate(every)},  # a tile's place within its rank (app.js)
        "pictures": access.has_permission(user, Permission.SNAPSHOT_READ),
        "may_read_alarms": access.has_permission(user, Permission.ALARM_READ),
    }


@router.get("/")
def overview(page: SignedInPage, session: SessionDep) -> Response:
    """The overview: counts, alarms (open first), every seal you may see (a debtor is sent to the portal: whether
    and when a seal was last heard from is not theirs to see)."""
    assert page.user is not None
    if not access.has_permission(page.user, Permission.SEAL_STATUS):
        return RedirectResponse("/portal", status_code=status.HTTP_303_SEE_OTHER)
    values = _tiles_and_counts(session, page.user, page.context.settings)
    return page.render("overview.html", live_url=page.live_url("overview"), **values)


@router.post("/alarms/{alarm_id}/ack")
def acknowledge(
    page: SignedInPage,
    session: SessionDep,
    alarm_id: AlarmId,
    note: Note = "",
) -> Response:
    """Acknowledge an open alarm with a note (judge, officer, clerk); every open screen shows it at once."""
    user = page.user
    assert user is not None
    alarm = get_alarm(session, alarm_id=alarm_id)
    read, ack = Permission.ALARM_READ, Permission.ALARM_ACK
    access.check_object_visible(session, user, alarm.case_no, read, act=ack, what=f"alarm {alarm_id}")
    alarm = acknowledge_as(session, actor=user, alarm_id=alarm_id, note=note.strip())
    session.commit()
    page.context.live.publish([Change("alarm", alarm.device_id, alarm.case_no)])
    if page.request.headers.get("HX-Request") != "true":
        return RedirectResponse("/", status_code=status.HTTP_303_SEE_OTHER)
    [row] = rows_of(session, user, [alarm])
    return page.render("overview/_alarm.html", row=row, oob=False, alarm_alone=True)


@live_view("overview")
def overview_changes(live: LiveRender, changes: list[Change] | None) -> dict[str, str]:
    """The overview's fragments after ``changes``: the counts, the alarm list (if it changed since this stream last
    sent it) and the changed seals' tiles — or the whole grid of tiles when a seal the page does not show yet is
    among them (or one has gone)."""
    if changes is None or not access.has_permission(live.user, Permission.SEAL_STATUS):
        return {}
    cases = access.visible_case_nos(live.session, live.user)
    stock = access.sees_stock(live.user)  # the page shows the court's stock: a seal entering or leaving it concerns it
    shown = live.state.get("devices")
    # Which cases the page shows is not known yet (a stream's first changes: it may show a case taken from the user
    # since it was read, or while its tab reconnected): an assignment concerns it whatever its case.
    unknown = "cases" not in live.state
    if cases is not None:  # and those it showed: a case taken from the user takes its seals off the page
        cases, live.state["cases"] = cases | live.state.get("cases", set()), cases
    if cases is not None and not any(_concerns(c, cases, shown, unknown, stock) for c in changes):
        return {}  # only other cases' changes: none of the queries below (a judge's tab, a court's day of heartbeats)
    changed = {c.device_id for c in changes if c.device_id is not None}
    values = _tiles_and_counts(live.session, live.user, live.context.settings, changed)
    first = "devices" not in live.state  # which seals the page shows is not known yet: those of now, unless…
    known = live.state.setdefault("devices", values["visible"])
    if cases is not None and not any(_concerns(c, cases, known | values["visible"], unknown, stock) for c in changes):
        return {}  # nothing of the user's: not even when something happened elsewhere is theirs to learn
    context = {
        "t": live.t,
        "lang": live.t.language,
        "oob": True,
        "csrf_field": CSRF_FIELD,
        "csrf_token": live.csrf_token,
        **values,
    }
    parts = {"counts": render_text("overview/_counts.html", context)}
    if values["may_read_alarms"]:
        # Rendered when it changed only: a court's seals send heartbeats all day (the stream sends only what differs).
        signature = alarms_signature(values["alarms"], values["alarms_total"])
        if signature != live.state.get("alarms"):
            live.state["alarms"] = signature
            parts["alarms"] = render_text("overview/_alarms.html", context)
    moved = any(
        c.what in _SEALS_MOVE and (cases is None or _concerns(c, cases, known, unknown, stock)) for c in changes
    )
    if values["visible"] != known or (first and moved):
        # a seal came or went (or may have, since the page was read): the whole grid (with a new name: always sent)
        live.state["devices"] = values["visible"]
        context.update(_tiles_and_counts(live.session, live.user, live.context.settings))
        return {**parts, "+tiles": render_text("overview/_tiles.html", context)}
    parts.update(
        (f"tiles {tile.seal.device_id}", render_text("overview/_tile.html", {**context, "tile": tile}))
        for tile in values["tiles"]
    )
    return parts


def _concerns(
    change: Change, cases: set[str], devices: set[str] | None, unknown: bool = False, stock: bool = False
) -> bool:
    """Whether ``change`` may change an overview that shows ``cases`` and the seals ``devices`` (``None``: not known
    yet): a change that names a case concerns that case's viewers only (a seal moved to another case speaks there,
    not here); one that names none (a seal's status, an offline alarm), the viewers of its seal. ``unknown``: the
    cases the page shows are not known, and an assignment may have taken one of them from the user: an
    ``assignment`` change (a clerk's act, rare) then concerns it whatever its case (the whole grid is sent again, as
    the user may see it now). ``stock``: the page shows the court's stock (:func:`server.auth.access.sees_stock`):
    a seal bound, unbound or registered concerns it whatever its case, as the seal entered or left the stock (a
    seal bound elsewhere must not stay on offer as free to install; one unbound elsewhere is free now) — the grid
    sent again shows the seal gone or there, unbound and without a place, and nothing of the other case. No other
    change of a case the user does not see does (a removal filed, an alarm), or a stream would say when such things
    happen in other cases."""
    if unknown and change.what == "assignment":
        return True
    if stock and change.what in _STOCK_MOVES:
        return True
    if change.case_no is not None:
        return change.case_no in cases
    return change.device_id is None or devices is None or change.device_id in devices
