"""The removal requests of a case as the case page shows them (``REMOVAL_READ``): state, ground, the debtor's
statement and proof files, the creditor's written views, the judge's decision, each seal's disarm after an
approval, the history — and which of the next acts the user may do (:mod:`server.auth.access` decides who; the
request's state decides what, through :func:`server.removal.state.allowed_actions`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from server.auth import access
from server.auth.access import Permission
from server.auth.models import User
from server.auth.users import usernames_by_id
from server.removal.disarm import SealProgress, SealStatus, seal_progress
from server.removal.grounds import RemovalGround
from server.removal.lifting import SealFound
from server.removal.models import RemovalRequest, RemovalView
from server.removal.progress import DUE, WAIVABLE
from server.removal.shown import StepShown, steps_shown
from server.removal.state import RemovalAction, RemovalState, allowed_actions
from server.removal.steps import list_requests
from server.removal.views_window import needs_early_reasons

#: The requests a case page lists (a case has at most one open one; the rest are history).
MAX_REQUESTS = 10
#: What the officer may say was found of a seal lifted without its acknowledgement, in the form's order.
FOUND_CHOICES = tuple(SealFound)


@dataclass(frozen=True)
class ViewLine:
    view: RemovalView
    author: str | None


@dataclass(frozen=True)
class RequestCard:
    request: RemovalRequest
    state: RemovalState
    ground: RemovalGround
    filed_by: str | None
    decided_by: str | None
    lifted_by: str | None
    views: list[ViewLine]
    progress: list[SealProgress]
    steps: list[StepShown]  # the history as the reader may see it (server.removal.shown)
    can_review: bool
    can_decide: bool
    can_resend: bool
    can_lift: bool
    can_waive: bool  # the judge may lift seals that do not answer without their acknowledgement
    can_abort: bool  # the judge may withdraw the approval (the seals are armed again)
    views_open: bool  # the creditor's views are still taken
    early_needed: bool = False  # approving now needs the judge's reasons for deciding before the views' time ends

    @property
    def waivable(self) -> list[SealProgress]:
        """The seals the judge's decision may name now: the disarm expired unanswered, or the seal refused it."""
        return [p for p in self.progress if p.status in WAIVABLE]

    @property
    def without_ack(self) -> list[SealProgress]:
        """The seals lifted without their acknowledgement: the officer says what was found of each."""
        return [p for p in self.progress if p.status is SealStatus.WITHOUT_ACK]

    @property
    def found_choices(self) -> tuple[SealFound, ...]:
        return FOUND_CHOICES

    @property
    def is_open(self) -> bool:
        return not self.state.is_final

    def ground_text(self, lang: str) -> str:
        label = self.ground.label
        return label.zh if lang == "zh-CN" else label.en


def request_cards(session: Session, user: User, case_no: str, *, now: datetime) -> list[RequestCard]:
    """The case's requests, newest first (none for roles that may not read them)."""
    if not access.has_permission(user, Permission.REMOVAL_READ):
        return []
    requests = list_requests(session, case_no=case_no, limit=MAX_REQUESTS)
    ids: set[int | None] = set()
    for r in requests:
        ids |= {r.filed_by, r.decided_by, r.lifted_by, *(v.author_id for v in r.views)}
    names = usernames_by_id(session, ids)
    return [_card(session, user, r, names, now) for r in requests]


def _card(
    session: Session, user: User, request: RemovalRequest, names: dict[int | None, str], now: datetime
) -> RequestCard:
    state = RemovalState(request.state)
    actions = set(allowed_actions(state))
    progress = seal_progress(session, request, now=now)

    def may(permission: Permission) -> bool:
        return access.has_permission(user, permission)

    return RequestCard(
        request=request,
        state=state,
        ground=RemovalGround(request.ground),
        filed_by=names.get(request.filed_by),
        decided_by=names.get(request.decided_by) if request.decided_by is not None else None,
        lifted_by=names.get(request.lifted_by) if request.lifted_by is not None else None,
        views=[ViewLine(v, names.get(v.author_id)) for v in request.views],
        progress=progress,
        steps=steps_shown(request.steps, full=may(Permission.SEAL_STATUS)),
        can_review=may(Permission.REMOVAL_REVIEW) and RemovalAction.REVIEW in actions,
        can_decide=may(Permission.REMOVAL_DECIDE) and RemovalAction.APPROVE in actions,
        can_resend=may(Permission.REMOVAL_RESEND)
        and RemovalAction.RESEND_DISARM in actions
        and any(p.status in DUE for p in progress),
        can_lift=may(Permission.REMOVAL_LIFT) and RemovalAction.LIFT in actions,
        can_waive=may(Permission.REMOVAL_DECIDE)
        and RemovalAction.LIFT_WITHOUT_ACK in actions
        and any(p.status in WAIVABLE for p in progress),
        can_abort=may(Permission.REMOVAL_DECIDE) and RemovalAction.ABORT in actions,
        views_open=not state.is_decided and now < request.views_due_at,
        early_needed=not state.is_decided and needs_early_reasons(request, views=len(request.views), now=now),
    )
