"""The creditor's time for written views (申请执行人书面意见) and the judge's decision before it ends.

The creditor is told at the filing that a written view is taken *before the judge decides and no later than*
``views_due_at`` (:mod:`server.removal.messages`): the judge may decide first. On a ground that rests on the
creditor's own consent or act (:attr:`~server.removal.grounds.RemovalGround.rests_on_creditor`: the applicant
withdrew, security with the applicant's consent, a settlement with the applicant) the creditor's word is what the
decision rests on, so an approval while the time runs and no view is on record is refused (409) unless the judge
states why it is decided early — e.g. the creditor's consent given in writing at the court. Those reasons are kept
in the approval's step of the request's history (its note, exported with the request in ``removal.jsonl``) and in
the audit entry (``early_reasons``, with ``views_due_at`` and the number of ``views`` then on record).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from server.errors import Conflict
from server.removal.grounds import RemovalGround
from server.removal.models import RemovalRequest, RemovalView

#: How the judge's reasons for deciding early follow the reasons for the decision in the approval's note.
EARLY_LABEL = "提前决定的理由 / Why decided before the creditor's time for views ended"


def views_on_record(session: Session, request: RemovalRequest) -> int:
    """How many written views of the creditor the request has."""
    query = select(func.count()).select_from(RemovalView).where(RemovalView.request_id == request.id)
    return int(session.scalar(query) or 0)


def needs_early_reasons(request: RemovalRequest, *, views: int, now: datetime) -> bool:
    """Must the judge say why an approval now comes before the creditor's time for views ends?"""
    return RemovalGround(request.ground).rests_on_creditor and views == 0 and now < request.views_due_at


def check_early_approval(
    session: Session, request: RemovalRequest, *, early: str, now: datetime
) -> tuple[str, dict[str, Any]]:
    """Refuse (:class:`Conflict`) an approval that :func:`needs_early_reasons` and has none; else the text that
    follows the judge's reasons in the approval's note (empty if no early reasons were given) and what the audit
    entry keeps of the creditor's time."""
    views = views_on_record(session, request)
    early = early.strip()
    if not early and needs_early_reasons(request, views=views, now=now):
        raise Conflict(
            f"removal request {request.id} rests on the creditor's consent or act, and the creditor's time for a "
            f"written view runs until {request.views_due_at:%Y-%m-%d %H:%M}Z with no view on record: wait for a "
            "view or for that time to end, or state why it is decided early (early_reasons)"
        ).saying("refusal.views_still_open", no=request.id, until=request.views_due_at)
    details: dict[str, Any] = {
        "views_due_at": request.views_due_at.isoformat(),
        "views": views,
        "before_views_due": now < request.views_due_at,
    }
    if early:
        details["early_reasons"] = early
    return (f"\n{EARLY_LABEL}: {early}" if early else ""), details
