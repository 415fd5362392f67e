"""The audit log: every human action, newest first (clerk only)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query
from sqlalchemy import select

from server.api.deps import SessionDep, requires
from server.api.params import Before
from server.api.routing import ValidatedRoute
from server.api.schemas import ONE_LINE, AuditPage, AuditPublic
from server.audit.models import AuditEntry
from server.auth.access import Permission
from server.auth.models import User

router = APIRouter(prefix="/audit", tags=["audit"], route_class=ValidatedRoute)

MAX_PAGE = 500


@router.get("")
def read_audit(
    _clerk: Annotated[User, Depends(requires(Permission.AUDIT_READ))],
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE, description="Entries per page.")] = 100,
    before: Before = None,
    action: Annotated[
        str | None, Query(max_length=32, pattern=ONE_LINE, description="Only this action, e.g. login.failed.")
    ] = None,
    actor: Annotated[
        str | None, Query(max_length=64, pattern=ONE_LINE, description="Only this actor's username.")
    ] = None,
    target: Annotated[
        str | None, Query(max_length=128, pattern=ONE_LINE, description="Only this target (case, seal, user…).")
    ] = None,
    case_no: Annotated[
        str | None, Query(max_length=64, pattern=ONE_LINE, description="Only the entries of this case.")
    ] = None,
) -> AuditPage:
    """The audit log, newest first, in pages; filter by action, actor, target and case (clerk only)."""
    query = select(AuditEntry)
    if before is not None:
        query = query.where(AuditEntry.id < before)
    if action is not None:
        query = query.where(AuditEntry.action == action)
    if actor is not None:
        query = query.where(AuditEntry.actor == actor)
    if target is not None:
        query = query.where(AuditEntry.target == target)
    if case_no is not None:
        query = query.where(AuditEntry.case_no == case_no)
    rows = session.scalars(query.order_by(AuditEntry.id.desc()).limit(limit + 1)).all()
    page = rows[:limit]
    return AuditPage(
        entries=[AuditPublic.model_validate(row) for row in page],
        next_before=page[-1].id if len(rows) > limit else None,
    )
