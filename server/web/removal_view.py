"""What the debtor's portal and the creditor's view show of one case: its status, its seals (online, and armed or
not as their signed events say — no pictures, no events), and its removal requests, each with its proofs, the
creditor's views, each seal's progress after the approval and the history — what ``GET /api/removal-requests/{id}``
shows the same user, read with the same access checks (:mod:`server.auth.access`) and settled on read the same way
(:func:`server.removal.settler.settle_on_read`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import quote

from sqlalchemy import select
from sqlalchemy.orm import Session

from server.auth import access
from server.auth.access import Permission
from server.auth.models import User
from server.auth.users import usernames_by_id
from server.context import ServerContext
from server.core.base import utc_now
from server.core.live import Change
from server.removal.disarm import seal_progress, settle_on_read
from server.removal.grounds import RemovalGround
from server.removal.models import RemovalRequest
from server.removal.progress import SealProgress
from server.removal.shown import StepShown, seal_shown, steps_shown
from server.removal.state import RemovalAction, RemovalState, allowed_actions
from server.removal.steps import list_requests
from server.seals.models import Case, CaseStatus, Seal
from server.seals.registry import is_online
from server.web.live import LiveRender
from server.web.security import CSRF_FIELD
from server.web.templating import render_text

#: Requests shown on a case's page (a case has at most one open request; the others are history).
MAX_REQUESTS = 20


@dataclass(frozen=True)
class SealLine:
    device_id: str
    location: str
    online: bool | None  # None: not for this reader (a debtor learns nothing of when a seal is heard from)
    armed: bool | None  # as the seal's latest signed event says; None: it has not said yet, or it is withheld
    armed_at: datetime | None
    armed_hidden: bool = False  # withheld from this reader while the case is being lifted (CaseView.armed_hidden)


@dataclass(frozen=True)
class RequestView:
    request: RemovalRequest
    state: RemovalState
    ground: RemovalGround
    seals: list[SealProgress]  # after the approval: each seal the disarm went to, as the reader may see it
    steps: list[StepShown]  # the history, as the reader may see it (server.removal.shown)
    names: dict[int | None, str]  # usernames of the people named (filer, judge, officer, views' authors)
    actions: list[RemovalAction]  # what the state allows next, for whoever may do it
    now: datetime
    # With seal:status: each seal's status, and when its disarm was sent and answered. Without (the debtor): a seal
    # not heard from is "pending", no time is shown, the history's steps about seals are "court_processing" — they
    # would tell which seal is deaf (server.removal.shown).
    seal_status: bool = False

    @property
    def went_back(self) -> bool:
        """``disarm_pending`` again after ``disarmed`` (a seal's signed word said it is not disarmed after all,
        :func:`server.removal.disarm.armed_again`): whoever was told that an officer will come reads that this no
        longer holds, until the request moves on. Its last move, not its last step: a re-sent disarm keeps it."""
        moves = [s for s in self.request.steps if s.from_state != s.to_state]
        back = bool(moves) and moves[-1].from_state == RemovalState.DISARMED.value
        return self.state is RemovalState.DISARM_PENDING and back

    @property
    def may_cancel(self) -> bool:
        return RemovalAction.CANCEL in self.actions

    @property
    def views_open(self) -> bool:
        """Written views are still taken: before the decision and within the creditor's time."""
        return RemovalAction.COMMENT in self.actions and self.now < self.request.views_due_at

    def name(self, user_id: int | None) -> str:
        return self.names.get(user_id, "—") if user_id is not None else "—"


@dataclass(frozen=True)
class CaseView:
    case: Case
    seals: list[SealLine]
    requests: list[RequestView]  # newest first
    may_file: bool  # sealed, a seal bound, no request open (the role check is the route's)
    device_ids: frozenset[str]  # the case's seals and those its requests sent a disarm to
    # The seals' armed state is withheld from this reader (without seal:status: the debtor, the paper code's holder)
    # while the case is being lifted, as the notice's public page withholds it (CaseStatus.hides_armed_state): a seal
    # may stand disarmed before the officer has come.
    armed_hidden: bool = False

    @property
    def status(self) -> CaseStatus:
        return CaseStatus(self.case.status)

    @property
    def open_request(self) -> RequestView | None:
        return next((r for r in self.requests if not r.state.is_final), None)

    @property
    def url_case_no(self) -> str:
        return quote(self.case.case_no, safe="")

    def concerned_by(self, changes: list[Change]) -> bool:
        """Whether any of ``changes`` (of the live bus) is about this case or one of its seals (a change that names
        another case is not: a seal moved there speaks there)."""
        case_no = self.case.case_no
        return any(c.case_no == case_no if c.case_no is not None else c.device_id in self.device_ids for c in changes)

    def requests_touched_by(self, changes: list[Change]) -> bool:
        """Whether ``changes`` may have changed the requests: one of them moved (a page, the API or the settler
        published it), or a seal of an open request has been heard from (its signed ack of the disarm, or an event
        saying it is armed again after its request was ``disarmed``). A heartbeat of a seal no open request has does
        not re-send the requests (which would fold the history a reader has opened)."""
        waited_for = {p.device_id for r in self.requests if not r.state.is_final for p in r.seals}
        return any(
            (c.what == "removal" and c.case_no == self.case.case_no) or c.device_id in waited_for for c in changes
        )


def case_url(case_no: str, prefix: str) -> str:
    """``/portal/cases/<case number, percent-encoded>`` (``prefix`` ``/portal`` or ``/creditor``)."""
    return f"{prefix}/cases/{quote(case_no, safe='')}"


def request_view(session: Session, request: RemovalRequest, *, now: datetime, seal_status: bool) -> RequestView:
    ids = {request.filed_by, request.decided_by, request.lifted_by, *(v.author_id for v in request.views)}
    state = RemovalState(request.state)
    final = state.is_final
    seals = [seal_shown(p, full=seal_status, final=final) for p in seal_progress(session, request, now=now)]
    return RequestView(
        request=request,
        state=state,
        ground=RemovalGround(request.ground),
        seals=seals,
        steps=steps_shown(request.steps, full=seal_status),
        names=usernames_by_id(session, ids),
        actions=allowed_actions(state),
        now=now,
        seal_status=seal_status,
    )


def case_view(
    session: Session,
    user: User,
    case_no: str,
    permission: Permission,
    *,
    offline_after_s: int,
    now: datetime,
    settle_with: ServerContext | None = None,
    before_read: Callable[[], None] | None = None,
) -> CaseView:
    """The case as ``user`` may see it: :class:`~server.errors.NotFound` if they may not see it, ``Forbidden`` if
    their role lacks ``permission`` (the page's own: filing for the debtor, views for the creditor). With
    ``settle_with`` (a page's GET; never a live view, which only reads), a request whose seals have all acknowledged
    is settled first, as the API does before it shows one, and every open page of the case told (the settler then
    finds nothing to settle, and would tell none). ``before_read`` is called after the settling and before
    what is shown is read (a page takes its live view's digest there; it leaves nothing loaded in ``session``)."""
    case = access.case_for(session, user, case_no, permission)
    readable = access.has_permission(user, Permission.REMOVAL_READ)
    rows = list_requests(session, case_no=case.case_no, limit=MAX_REQUESTS) if readable else []
    settled = settle_with is not None and any(
        settle_on_read(settle_with.session_factory, session, r, now=now) for r in rows
    )
    if settled and settle_with is not None:
        settle_with.live.publish([Change("removal", case_no=case.case_no)])
    if before_read is not None:
        before_read()
    if settled or before_read is not None:  # a new read after the settling (and the digest)
        session.expire_all()
        case = access.case_for(session, user, case.case_no, permission)
    # Whether and when a seal was last heard from is not for whoever holds the debtor's paper code: it would tell
    # when jamming works (the API's reduced seal view, ``seal:status``).
    status = access.has_permission(user, Permission.SEAL_STATUS)
    requests = []
    if readable:
        if settled or before_read is not None:
            rows = list_requests(session, case_no=case.case_no, limit=MAX_REQUESTS)
        requests = [request_view(session, r, now=now, seal_status=status) for r in rows]
    seals: list[Seal] = []
    if access.has_permission(user, Permission.SEAL_READ):
        seals = list(session.scalars(select(Seal).where(Seal.case_no == case.case_no).order_by(Seal.device_id)))
    hidden = not status and CaseStatus(case.status).hides_armed_state
    lines = [
        SealLine(
            device_id=s.device_id,
            location=s.location,
            online=is_online(s, now=now, offline_after_s=offline_after_s) if status else None,
            armed=None if hidden else s.armed,
            armed_at=s.armed_at if status else None,
            armed_hidden=hidden,
        )
        for s in seals
    ]
    open_request = any(not r.state.is_final for r in requests)
    devices = {s.device_id for s in seals} | {p.device_id for r in requests for p in r.seals}
    return CaseView(
        case=case,
        seals=lines,
        requests=requests,
        may_file=case.status == CaseStatus.SEALED and bool(seals) and not open_request,
        device_ids=frozenset(devices),
        armed_hidden=hidden,
    )


def my_cases(session: Session, user: User, *, now: datetime, offline_after_s: int) -> list[CaseView]:
    """The cases ``user`` is a party to (a clerk's "every case" is not a party's list: none)."""
    visible = access.visible_case_nos(session, user) or set()
    views = []
    for case_no in sorted(visible):
        views.append(case_view(session, user, case_no, Permission.CASE_READ, offline_after_s=offline_after_s, now=now))
    return views


def live_case_values(
    live: LiveRender, changes: list[Change] | None, permission: Permission, who: str
) -> tuple[CaseView, dict[str, Any]] | None:
    """The party's case view of the stream's ``case_no`` and the values its parts render with, or ``None`` when no
    change concerns it (``changes=None``: every part is asked for), or the user may not see it (the portal's and the
    creditor's live views; the stream's ``case_no`` is the browser's to choose)."""
    view = case_view(  # NotFound, Forbidden: the stream ends and the page reloads (LiveRender's caller)
        live.session,
        live.user,
        live.params.get("case_no", ""),
        permission,
        offline_after_s=live.context.settings.offline_after_s,
        now=utc_now(),
    )
    if changes is not None and not view.concerned_by(changes):
        return None
    values = {
        "t": live.t,
        "lang": live.t.language,
        "oob": True,
        "view": view,
        "who": who,
        "csrf_field": CSRF_FIELD,
        "csrf_token": live.csrf_token,
    }
    return view, values


def live_case_parts(
    changes: list[Change] | None, view: CaseView, values: dict[str, Any], parts: dict[str, str]
) -> dict[str, str]:
    """``parts`` and, when a request moved (or every part is asked for), the requests. The stream sends only those
    that differ from what the browser has (the form being filled in is never replaced)."""
    if changes is None or view.requests_touched_by(changes):
        parts["requests"] = render_text("portal/_requests.html", values)
    return parts
