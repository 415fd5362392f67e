"""Notification targets: the webhooks that receive a case's alarms on behalf of its judge or creditor (clerk only).

A target's own HMAC secret is written, never read back: responses say only whether it has one.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, status
from pydantic import BaseModel, ConfigDict, Field

from server.api.deps import ContextDep, CurrentUser, Responses, SessionDep, case_with
from server.api.params import RowIdPath
from server.api.routing import ValidatedRoute
from server.api.schemas import ONE_LINE
from server.auth import access
from server.auth.access import Permission
from server.errors import AlreadyExists, Invalid
from server.notify.models import NotificationTarget
from server.notify.outbox import Role
from server.notify.targets import add_target as add_webhook_target
from server.notify.targets import get_notification_target, list_notification_targets, remove_notification_target
from server.notify.webhook import SECRET_MIN_LENGTH
from server.seals.models import Case

router = APIRouter(tags=["notifications"], route_class=ValidatedRoute)

CASE_NOT_FOUND: Responses = {404: {"description": "No such case, or not one of yours"}}


class NotificationTargetCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Role = Field(description="Whom the webhook speaks for: judge or creditor.")
    url: str = Field(
        min_length=1, max_length=2000, pattern=ONE_LINE, description="http(s) URL the alarms are POSTed to."
    )
    secret: str | None = Field(
        None,
        min_length=SECRET_MIN_LENGTH,
        max_length=256,
        pattern=ONE_LINE,
        description="This target's HMAC-SHA256 key (Standard Webhooks: a whsec_<base64> secret is the key those "
        "bytes are); without one the global notify.webhook_secret_file signs, and without either the target is "
        "refused. Never returned.",
    )


class NotificationTargetPublic(BaseModel):
    id: int
    case_no: str
    role: Role
    url: str
    has_secret: bool = Field(description="Whether the target has a key of its own (the key is never shown).")
    created_at: datetime


def target_public(target: NotificationTarget) -> NotificationTargetPublic:
    return NotificationTargetPublic(
        id=target.id,
        case_no=target.case_no,
        role=Role(target.role),
        url=target.url,
        has_secret=target.secret is not None,
        created_at=target.created_at,
    )


@router.get("/cases/{case_no:path}/notification-targets", responses=CASE_NOT_FOUND)
def read_targets(
    case: Annotated[Case, Depends(case_with(Permission.NOTIFY_ADMIN))], session: SessionDep
) -> list[NotificationTargetPublic]:
    """The webhooks the case's alarms go to (clerk only)."""
    return [target_public(t) for t in list_notification_targets(session, case_no=case.case_no)]


@router.post(
    "/cases/{case_no:path}/notification-targets",
    status_code=status.HTTP_201_CREATED,
    responses=CASE_NOT_FOUND
    | {
        409: {"description": "The case already sends to this URL for this role"},
        422: {"description": "Invalid, or no secret to sign with (neither its own nor notify.webhook_secret_file)"},
    },
)
def add_target(
    body: NotificationTargetCreate,
    case: Annotated[Case, Depends(case_with(Permission.NOTIFY_ADMIN))],
    clerk: CurrentUser,
    session: SessionDep,
    context: ContextDep,
) -> NotificationTargetPublic:
    """Send the case's alarms to a webhook on behalf of its judge or creditor (clerk only)."""
    try:
        target = add_webhook_target(
            session,
            actor=clerk,
            settings=context.settings.notify,
            case_no=case.case_no,
            role=body.role,
            url=body.url,
            secret=body.secret,
        )
    except AlreadyExists:
        raise
    except ValueError as exc:
        raise Invalid(str(exc)) from None  # 422, its detail in both languages (server.app)
    session.commit()
    return target_public(target)


@router.delete(
    "/notification-targets/{target_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={404: {"description": "No such target, or not of one of your cases"}},
)
def remove_target(target_id: RowIdPath, user: CurrentUser, session: SessionDep) -> None:
    """Stop sending a case's alarms to a webhook; its pending notifications are recorded failed (clerk only)."""
    target = get_notification_target(session, target_id=target_id)
    access.check_object_visible(
        session, user, target.case_no, Permission.NOTIFY_ADMIN, what=f"notification target {target_id}"
    )
    remove_notification_target(session, actor=user, target_id=target_id)
    session.commit()
