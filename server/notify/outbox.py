"""The notification outbox: rows written in the transaction that opens an alarm, sent later by the worker."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from enum import StrEnum

from sqlalchemy import select
from sqlalchemy.orm import Session

from server.alarms.models import Alarm
from server.notify.models import Notification, NotificationTarget


class DeliveryState(StrEnum):
    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"  # gave up: max_attempts reached, or nothing can ever succeed (no signing key)


class Role(StrEnum):
    """Who a webhook speaks for: the case's enforcement judge, or the applicant (creditor) if the court allows."""

    JUDGE = "judge"
    CREDITOR = "creditor"


def enqueue_notifications(session: Session, alarm: Alarm, *, now: datetime) -> list[Notification]:
    """One pending notification per webhook target of the alarm's case (none if the case has no target)."""
    targets = session.scalars(
        select(NotificationTarget).where(NotificationTarget.case_no == alarm.case_no).order_by(NotificationTarget.id)
    )
    rows = [
        Notification(
            alarm=alarm,
            target=target,
            role=target.role,
            url=target.url,
            state=DeliveryState.PENDING.value,
            attempts=0,
            next_attempt_at=now,
            created_at=now,
        )
        for target in targets
    ]
    session.add_all(rows)
    return rows


def notifying(session: Session) -> Callable[[Alarm], None]:
    """What an :class:`~server.alarms.book.AlarmBook` calls when it opens an alarm: queue its notifications in the
    same transaction, due at once."""

    def on_open(alarm: Alarm) -> None:
        enqueue_notifications(session, alarm, now=alarm.opened_at)

    return on_open
