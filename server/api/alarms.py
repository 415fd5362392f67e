"""Alarms: what needs a person on the cases you may see; acknowledge one, then close it."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session

from server.alarms import AlarmState
from server.alarms.models import Alarm
from server.alarms.service import acknowledge_as, close_as, get_alarm, list_alarms
from server.api.deps import ContextDep, CurrentUser, Responses, SessionDep, requires
from server.api.params import Before, RowIdPath
from server.api.routing import ValidatedRoute
from server.api.schemas import FreeText
from server.auth import access
from server.auth.access import Permission
from server.auth.models import User
from server.auth.users import usernames_by_id
from server.core.live import Change

router = APIRouter(prefix="/alarms", tags=["alarms"], route_class=ValidatedRoute)

MAX_PAGE = 500
NOT_FOUND: Responses = {404: {"description": "No such alarm, or not of one of your cases"}}
CONFLICT: Responses = {409: {"description": "Not allowed in the alarm's current state"}}


class AlarmPublic(BaseModel):
    id: int = Field(description="Increasing; the paging cursor.")
    case_no: str
    device_id: str
    kind: str = Field(
        description="intrusion, tamper, camera_blind, camera_lost, offline, missing_events, outbox_full, "
        "speaker_failed, event_lost, arm_failed, disarm_failed, snapshot_lost, clock_unsynced, case_mismatch "
        "(封条配置的案号与本案不符 / seal configured with another case number: its signed events are refused as "
        "wrong_case), refusal_flood (封条账号大量发送被拒消息 / its MQTT account sent more refused messages than "
        "[ingest] quarantine_seal_rows in a window: the rest are only counted; disable the account if its password "
        "is in other hands), sensor_flapping (传感器抖动 / a PIR or tamper switch flapping: its edges merged into "
        "signed counts), sensor_stuck (传感器卡滞 / a PIR reading motion without end), storage_failed (封条存储故障 / "
        "the seal's unsigned status report says it cannot store events: how many it holds in memory, since when)."
    )
    severity: str
    state: AlarmState
    opened_at: datetime
    last_seen_at: datetime = Field(description="When the last repeat was folded into this alarm.")
    count: int = Field(description="Occurrences folded into this alarm.")
    acknowledged_by: str | None = Field(description="Username; null while not acknowledged.")
    acknowledged_at: datetime | None
    acknowledged_note: str | None
    closed_by: str | None = Field(description="Username; null while open, or when the system closed it.")
    closed_at: datetime | None
    closed_note: str | None
    first_event_id: int | None
    last_event_id: int | None
    details: dict[str, Any] = Field(
        description="An event's alarm: its payload, event_type, seq and ts (by the seal's clock), and late (of an "
        "ended binding) or disarmed_while_sealed (an intrusion or tamper of a seal that said it was disarmed while no "
        "approved removal expected it) when true; received_at (the court's time, as ts) when ts lies more than 180 s "
        "from it, with delayed_s (seconds after ts: 迟报 / a delayed report, a seal that was offline) if the seal's "
        "own last word on its clock at that event said it was synchronised, else clock_gap_s (received_at − ts, "
        "negative for a clock ahead) and clock_synced (false: the seal said its clock was not synchronised; null: it "
        "never said): 时间存疑 / the time is in doubt, no delay claimed. A repeat folded into the alarm writes its "
        "own details; the opening occurrence's event_type, seq, ts and these marks, if it had them, stay under "
        "opening. Every alarm raised from an event (arm_failed and disarm_failed from a refusal too) carries "
        "simulated and these marks this way. A case_mismatch: claimed_case_no, event_type, "
        "seq and ts of the last refused event, and intrusions (count, seqs, last) once an intrusion or tamper was "
        "among them. A refusal_flood: window_start, window_s, rows_per_window and reasons (reason -> messages "
        "counted only in the batch that raised it)."
    )


class AlarmNote(BaseModel):
    model_config = ConfigDict(extra="forbid")

    note: FreeText = Field("", description="What was seen or done; kept with the alarm.")


@router.get("")
def read_alarms(
    user: Annotated[User, Depends(requires(Permission.ALARM_READ))],
    session: SessionDep,
    state: Annotated[AlarmState | None, Query(description="Only alarms in this state.")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE, description="Alarms per page.")] = 50,
    before: Before = None,
) -> list[AlarmPublic]:
    """Alarms of the cases you may see, newest first."""
    case_nos = access.visible_case_nos(session, user)
    alarms = list_alarms(session, case_nos=case_nos, state=state.value if state else None, limit=limit, before=before)
    return _public(session, alarms)


@router.get("/{alarm_id}", responses=NOT_FOUND)
def read_alarm(alarm_id: RowIdPath, user: CurrentUser, session: SessionDep) -> AlarmPublic:
    """One alarm."""
    return _public(session, [_alarm_for(session, user, alarm_id, Permission.ALARM_READ)])[0]


@router.post("/{alarm_id}/ack", responses=NOT_FOUND | CONFLICT)
def acknowledge(
    alarm_id: RowIdPath, body: AlarmNote, user: CurrentUser, session: SessionDep, context: ContextDep
) -> AlarmPublic:
    """Acknowledge an open alarm: you have seen it and take care of it (judge, officer, clerk)."""
    _alarm_for(session, user, alarm_id, Permission.ALARM_ACK)
    alarm = acknowledge_as(session, actor=user, alarm_id=alarm_id, note=body.note)
    session.commit()
    context.live.publish([Change("alarm", alarm.device_id, alarm.case_no)])  # open screens show it at once
    return _public(session, [alarm])[0]


@router.post("/{alarm_id}/close", responses=NOT_FOUND | CONFLICT)
def close(
    alarm_id: RowIdPath, body: AlarmNote, user: CurrentUser, session: SessionDep, context: ContextDep
) -> AlarmPublic:
    """Close an alarm: dealt with, or a false alarm (judge, clerk)."""
    _alarm_for(session, user, alarm_id, Permission.ALARM_CLOSE)
    alarm = close_as(session, actor=user, alarm_id=alarm_id, note=body.note)
    session.commit()
    context.live.publish([Change("alarm", alarm.device_id, alarm.case_no)])
    return _public(session, [alarm])[0]


def _alarm_for(session: Session, user: User, alarm_id: int, permission: Permission) -> Alarm:
    alarm = get_alarm(session, alarm_id=alarm_id)
    access.check_object_visible(
        session, user, alarm.case_no, Permission.ALARM_READ, act=permission, what=f"alarm {alarm_id}"
    )
    return alarm


def _public(session: Session, alarms: list[Alarm]) -> list[AlarmPublic]:
    names = usernames_by_id(session, {a.acknowledged_by for a in alarms} | {a.closed_by for a in alarms})
    return [
        AlarmPublic(
            id=a.id,
            case_no=a.case_no,
            device_id=a.device_id,
            kind=a.kind,
            severity=a.severity,
            state=AlarmState(a.state),
            opened_at=a.opened_at,
            last_seen_at=a.last_seen_at,
            count=a.count,
            acknowledged_by=names.get(a.acknowledged_by) if a.acknowledged_by is not None else None,
            acknowledged_at=a.acknowledged_at,
            acknowledged_note=a.acknowledged_note,
            closed_by=names.get(a.closed_by) if a.closed_by is not None else None,
            closed_at=a.closed_at,
            closed_note=a.closed_note,
            first_event_id=a.first_event_id,
            last_event_id=a.last_event_id,
            details=a.details,
        )
        for a in alarms
    ]
