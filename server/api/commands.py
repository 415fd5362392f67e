"""Commands to a seal: issue one (signed, published by the dispatcher), follow it until the seal answers.

A command is ``pending`` until the seal's signed ``command_ack`` (→ ``acknowledged``: delivered and carried out) or
``command_rejected`` (→ ``rejected``) has been stored; the broker accepting it (``broker_accepted_at``) is no
delivery. Without an answer by ``expires_at`` it becomes ``expired``.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, status
from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import select
from sqlalchemy.orm import Session

from seal_protocol import canonical_json
from seal_protocol.commands import CommandAction
from seal_protocol.wirejson import check_wire_value
from server.api.deps import ContextDep, CurrentUser, Responses, SessionDep, seal_with
from server.api.params import Before, DeviceIdPath, RowIdPath
from server.api.routing import ValidatedRoute
from server.auth import access
from server.auth.access import Permission
from server.auth.models import User
from server.commands.models import CourtCommand
from server.commands.service import get_command, issue_command_as, list_commands
from server.commands.state import CommandState
from server.core.base import utc_now
from server.seals.models import Seal

router = APIRouter(tags=["commands"], route_class=ValidatedRoute)

MAX_PAGE = 500
MAX_ARGS_BYTES = 2048
#: disarm and arm carry out a removal decision (or undo it): judges and clerks only.
DECISIONS = frozenset({CommandAction.DISARM, CommandAction.ARM})
SEAL_NOT_FOUND: Responses = {404: {"description": "No such seal, or not one of yours"}}


class CommandCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    action: CommandAction = Field(
        description="disarm, arm (the case's judge); test_warning, snapshot, ping (also the clerk and officers)."
    )
    args: dict[str, Any] = Field(default_factory=dict, description="Action-specific arguments (none are used yet).")

    @field_validator("args")
    @classmethod
    def _small(cls, value: dict[str, Any]) -> dict[str, Any]:
        """What the seal protocol admits in a command's args (:func:`check_wire_value`: no floats, integers within
        ±(2**53 - 1), printable ASCII keys, bounded nesting, …), at most :data:`MAX_ARGS_BYTES` as JSON, no NUL."""
        check_wire_value(value, what="args")  # an InvalidEnvelope is a ValueError: a 422 naming args
        encoded = canonical_json(value)
        if len(encoded) > MAX_ARGS_BYTES:
            raise ValueError(
                f"args 写成 JSON 最多 {MAX_ARGS_BYTES} 字节。 / args take at most {MAX_ARGS_BYTES} bytes as JSON"
            )
        if b"\\u0000" in encoded:  # NUL, in a key or a string: no database stores it in JSON
            raise ValueError("args 不能含有 NUL 字符。 / args must not contain NUL characters")
        return value


class CommandPublic(BaseModel):
    command_id: int = Field(description="Strictly increasing per seal; the paging cursor.")
    device_id: str
    case_no: str
    action: str
    args: dict[str, Any]
    state: CommandState = Field(description="pending until the seal answers; acknowledged, rejected or expired.")
    delivered: bool = Field(description="True only once the seal's signed command_ack has been stored.")
    issued_by: str | None = Field(description="Username of who issued it.")
    issued_at: datetime
    expires_at: datetime
    broker_accepted_at: datetime | None = Field(
        description="When the broker took the command for the seal. Not delivery: the seal may be offline."
    )
    publish_attempts: int
    publish_error: str | None = Field(description="Why the last publish attempt failed, if it did.")
    answered_at: datetime | None = Field(description="When the seal's answer was received.")
    answer_seq: int | None = Field(description="seq of the seal's command_ack / command_rejected event.")
    result: dict[str, Any] | None = Field(description="The answer's payload (e.g. result: disarmed).")
    reason: str | None = Field(description="Why the seal refused it: expired, replayed, wrong_case, bad_signature, …")
    command: str = Field(description="The signed command as published (verify with the court's public key).")


@router.post(
    "/seals/{device_id}/commands",
    status_code=status.HTTP_202_ACCEPTED,
    responses=SEAL_NOT_FOUND
    | {
        409: {"description": "The seal is bound to no case"},
        503: {"description": "Commands are not configured (no court signing key)"},
    },
)
def issue(
    device_id: DeviceIdPath, body: CommandCreate, user: CurrentUser, session: SessionDep, context: ContextDep
) -> CommandPublic:
    """Send a signed command to the seal; it stays pending until the seal's signed answer arrives."""
    permission = Permission.COMMAND_DISARM if body.action in DECISIONS else Permission.COMMAND_SEND
    seal = access.seal_for(session, user, device_id, permission)
    key = context.court_key.get()
    ttl = timedelta(seconds=context.settings.commands.ttl_s)
    row = issue_command_as(
        session, actor=user, seal=seal, action=body.action, args=body.args, key=key, ttl=ttl, now=utc_now()
    )
    session.commit()
    if context.dispatcher is not None:
        context.dispatcher.wake()
    return _public(session, [row])[0]


@router.get("/seals/{device_id}/commands", responses=SEAL_NOT_FOUND)
def read_seal_commands(
    seal: Annotated[Seal, Depends(seal_with(Permission.SEAL_STATUS))],
    user: CurrentUser,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE, description="Commands per page.")] = 50,
    before: Before = None,
) -> list[CommandPublic]:
    """The seal's commands in the cases you may see, newest first."""
    rows = list_commands(
        session, device_id=seal.device_id, case_nos=access.visible_case_nos(session, user), limit=limit, before=before
    )
    return _public(session, rows)


@router.get("/commands/{command_id}", responses={404: {"description": "No such command, or not of your cases"}})
def read_command(command_id: RowIdPath, user: CurrentUser, session: SessionDep) -> CommandPublic:
    """One command and what became of it."""
    row = get_command(session, command_id=command_id)
    access.check_object_visible(session, user, row.case_no, Permission.SEAL_STATUS, what=f"command {command_id}")
    return _public(session, [row])[0]


def _public(session: Session, rows: list[CourtCommand]) -> list[CommandPublic]:
    ids = {row.issued_by for row in rows}
    names = (
        {u.id: u.username for u in session.execute(select(User.id, User.username).where(User.id.in_(ids)))}
        if ids
        else {}
    )
    return [
        CommandPublic(
            command_id=row.id,
            device_id=row.device_id,
            case_no=row.case_no,
            action=row.action,
            args=row.args,
            state=CommandState(row.state),
            delivered=row.state == CommandState.ACKNOWLEDGED,
            issued_by=names.get(row.issued_by),
            issued_at=row.issued_at,
            expires_at=row.expires_at,
            broker_accepted_at=row.broker_accepted_at,
            publish_attempts=row.publish_attempts,
            publish_error=row.publish_error,
            answered_at=row.answered_at,
            answer_seq=row.answer_seq,
            result=row.result,
            reason=row.reason,
            command=row.signed.decode("utf-8"),
        )
        for row in rows
    ]
