"""The audit log page (``/audit``, clerk: ``AUDIT_READ``): every human action, newest first, in pages, filtered by
action, actor, target and case like ``GET /api/audit``. Details are shown as JSON text, escaped like everything else."""

from __future__ import annotations

import json
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Response
from sqlalchemy import select

from server.api.deps import SessionDep
from server.api.schemas import MAX_ROW_ID, ONE_LINE
from server.audit.models import AuditEntry
from server.auth import access
from server.auth.access import Permission
from server.web.deps import SignedInPage
from server.web.routing import PageRoute

router = APIRouter(route_class=PageRoute, include_in_schema=False)

PAGE = 100
MAX_ACTIONS = 200


def details_text(details: Any) -> str:
    """An entry's details as indented JSON (Chinese as it is); the template escapes it."""
    return json.dumps(details, ensure_ascii=False, indent=1, sort_keys=True, default=str)[:4000]


@router.get("/audit")
def audit_page(
    page: SignedInPage,
    session: SessionDep,
    action: Annotated[str, Query(max_length=32, pattern=ONE_LINE)] = "",
    actor: Annotated[str, Query(max_length=64, pattern=ONE_LINE)] = "",
    target: Annotated[str, Query(max_length=128, pattern=ONE_LINE)] = "",
    case_no: Annotated[str, Query(max_length=64, pattern=ONE_LINE)] = "",
    before: Annotated[int | None, Query(ge=1, le=MAX_ROW_ID)] = None,
) -> Response:
    """The audit log, newest first, in pages; filter by action, actor, target and case (clerk)."""
    assert page.user is not None
    access.require(page.user, Permission.AUDIT_READ)
    query = select(AuditEntry)
    filters = {"action": action.strip(), "actor": actor.strip(), "target": target.strip(), "case_no": case_no.strip()}
    if filters["action"]:
        query = query.where(AuditEntry.action == filters["action"])
    if filters["actor"]:
        query = query.where(AuditEntry.actor == filters["actor"])
    if filters["target"]:
        query = query.where(AuditEntry.target == filters["target"])
    if filters["case_no"]:
        query = query.where(AuditEntry.case_no == filters["case_no"])
    if before is not None:
        query = query.where(AuditEntry.id < before)
    rows = list(session.scalars(query.order_by(AuditEntry.id.desc()).limit(PAGE + 1)))
    entries = rows[:PAGE]
    older = None
    if len(rows) > PAGE:
        older = "/audit?" + urlencode({**{k: v for k, v in filters.items() if v}, "before": entries[-1].id})
    actions = list(session.scalars(select(AuditEntry.action).distinct().order_by(AuditEntry.action).limit(MAX_ACTIONS)))
    return page.render(
        "audit.html",
        entries=[(entry, details_text(entry.details)) for entry in entries],
        filters=filters,
        actions=actions,
        older=older,
        paged=before is not None,
    )
