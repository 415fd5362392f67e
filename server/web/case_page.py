"""The case page (``/cases/{case_no}``): the case and its status, its seals, a timeline of its events with their
pictures (older ones page by page; a picture opens full size with the verdict on its signed event), its alarms,
the commands sent to its seals and its removal requests — live: the view ``case`` sends what changed without a
reload. Who sees which part is :mod:`server.auth.access`'s to say, as for the API; the forms are
:mod:`server.web.case_actions`."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Response
from sqlalchemy.orm import Session

from server.api.deps import SessionDep
from server.api.params import CaseNoPath
from server.api.schemas import MAX_ROW_ID
from server.auth import access
from server.auth.access import Permission
from server.core.live import Change
from server.web.case_model import TIMELINE_MAX, case_devices, timeline
from server.web.case_parts import PARTS, Allowed, part_values, render_parts, timeline_update, timeline_whole
from server.web.deps import SignedInPage
from server.web.live import LiveRender, live_view, take_digest
from server.web.routing import PageRoute
from server.web.snapshot_model import snapshot_detail

router = APIRouter(route_class=PageRoute, include_in_schema=False)

RowId = Annotated[int, Path(ge=1, le=MAX_ROW_ID)]
Sha256 = Annotated[str, Path(pattern=r"^[0-9a-f]{64}$")]
Before = Annotated[int | None, Query(ge=1, le=MAX_ROW_ID)]


@router.get("/cases/{case_no}/timeline")
def timeline_page(page: SignedInPage, session: SessionDep, case_no: CaseNoPath, before: Before = None) -> Response:
    """An older page of the case's timeline (htmx: its rows; else a page of its own)."""
    assert page.user is not None
    case = access.case_for(session, page.user, case_no, Permission.EVENT_READ)
    allowed = Allowed.of(page.user)
    rows, next_before = timeline(session, case.case_no, pictures=allowed.pictures, before=before)
    values: dict[str, Any] = {
        "case": case,
        "case_no": case.case_no,
        "rows": rows,
        "next_before": next_before,
        "allowed": allowed,
    }
    if page.request.headers.get("HX-Request") == "true":
        return page.render("case/_timeline_rows.html", **values)
    return page.render("timeline.html", **values)


@router.get("/cases/{case_no}/events/{event_id}/snapshots/{sha256}")
def snapshot_page(
    page: SignedInPage, session: SessionDep, case_no: CaseNoPath, event_id: RowId, sha256: Sha256
) -> Response:
    """A picture of the case full size, with the verdict on the signed event that names it (htmx: the dialog)."""
    assert page.user is not None
    case = access.case_for(session, page.user, case_no, Permission.SNAPSHOT_READ)
    detail = snapshot_detail(
        session,
        case_no=case.case_no,
        event_id=event_id,
        sha256=sha256,
        store=page.context.stores.snapshots,
    )
    if page.request.headers.get("HX-Request") == "true":
        return page.render("case/_snapshot.html", case=case, detail=detail)
    return page.render("snapshot.html", case=case, detail=detail)


@router.get("/cases/{case_no}")
def case_page(page: SignedInPage, session: SessionDep, case_no: CaseNoPath) -> Response:
    """The case: status, seals, timeline, alarms, commands and removal requests, kept current without a reload."""
    assert page.user is not None
    take_digest(page, session, "case", case_no=case_no)  # before the page reads what it shows
    case = access.case_for(session, page.user, case_no, Permission.SEAL_STATUS)  # not the debtor's: the portal is
    values = part_values(session, page.user, case, page.context.settings)
    allowed: Allowed = values["allowed"]
    rows, next_before = timeline(session, case.case_no, pictures=allowed.pictures) if allowed.events else ([], None)
    parts = render_parts(values, t=page.t, csrf_token=page.csrf_token, parts=PARTS, oob=False)
    return page.render(
        "case.html",
        live_url=page.live_url("case", case_no=case.case_no),
        parts=parts,
        rows=rows,
        next_before=next_before,
        timeline_max=TIMELINE_MAX,
        **values,
    )


@live_view("case", whole=True)
def case_changes(live: LiveRender, changes: list[Change] | None) -> dict[str, str]:
    """The case page's parts after ``changes`` of its case or its seals (none for other cases' changes), and the
    timeline's new rows; with ``changes=None``, every part and the timeline whole. The stream sends only the parts
    that differ; typed text in the page's forms stays (``hx-preserve``)."""
    case = access.case_for(live.session, live.user, live.params.get("case_no", ""), Permission.SEAL_STATUS)
    if changes is not None and not concerns_case(live.session, case.case_no, changes):
        return {}
    values = part_values(live.session, live.user, case, live.context.settings)
    parts = {
        part: render_parts(values, t=live.t, csrf_token=live.csrf_token, parts=(part,), oob=True) for part in PARTS
    }
    allowed, now = values["allowed"], values["now"]
    if changes is None:
        live.state["rows"] = {}  # the timeline's rows the browser has: their digests by event id
        parts["timeline"], live.state["top"] = timeline_whole(
            live.session, case, t=live.t, allowed=allowed, after=None, now=now, shown=live.state["rows"]
        )
        return parts
    if not any(c.what in ("event", "snapshot") for c in changes):  # the timeline changes with events and pictures
        return parts
    rows, live.state["top"] = timeline_update(
        live.session,
        case,
        t=live.t,
        allowed=allowed,
        after=live.state.get("top"),
        now=now,
        shown=live.state.setdefault("rows", {}),
    )
    return {**parts, "+timeline": rows}  # (empty: nothing new or changed in the timeline, and nothing is sent)


def concerns_case(session: Session, case_no: str, changes: list[Change]) -> bool:
    """Whether any of ``changes`` may change what the case's page shows. A change that names a case concerns that
    case only: an event a seal stored under another case (it moved there) is none of this page's business, not even
    its timing. One that names none (a seal's status, a picture, an offline alarm) concerns the case's seals now —
    and, for a picture, its former seals too (a late picture of one of their events on this case's timeline)."""
    if any(c.case_no == case_no for c in changes):
        return True
    unnamed = [c for c in changes if c.case_no is None and c.device_id is not None]
    if not unnamed:
        return False
    if any(c.device_id in case_devices(session, case_no, former=False) for c in unnamed):
        return True
    pictures = [c for c in unnamed if c.what == "snapshot"]
    return bool(pictures) and any(c.device_id in case_devices(session, case_no) for c in pictures)
