"""Seals: every registered seal with its case and last known state."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from fastapi import APIRouter
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from server.api.deps import ContextDep, SessionDep
from server.models import Seal
from server.schemas import SealPublic

router = APIRouter(prefix="/seals", tags=["seals"])


def is_online(seal: Seal, *, now: datetime, offline_after_s: int) -> bool:
    """Reported online, and heard from recently enough (a lost Last Will must not leave a seal online forever)."""
    return (
        seal.status == "online"
        and seal.last_seen_at is not None
        and now - seal.last_seen_at <= timedelta(seconds=offline_after_s)
    )


def count_online(session: Session, *, now: datetime, offline_after_s: int) -> int:
    cutoff = now - timedelta(seconds=offline_after_s)
    query = select(func.count(Seal.id)).where(Seal.status == "online", Seal.last_seen_at >= cutoff)
    return int(session.scalar(query) or 0)


@router.get("")
def list_seals(session: SessionDep, context: ContextDep) -> list[SealPublic]:
    """Every seal with its case, last status and last event time."""
    now = datetime.now(UTC)
    offline_after_s = context.settings.offline_after_s
    return [
        SealPublic(
            device_id=seal.device_id,
            case_no=seal.case_no,
            location=seal.location,
            registered_at=seal.registered_at,
            status=seal.status,
            status_changed_at=seal.status_changed_at,
            last_seen_at=seal.last_seen_at,
            last_event_at=seal.last_event_at,
            online=is_online(seal, now=now, offline_after_s=offline_after_s),
        )
        for seal in session.scalars(select(Seal).order_by(Seal.device_id))
    ]
