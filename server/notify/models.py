"""The tables of notifications: each case's webhook targets, the durable outbox of notifications, and each user's
in-app inbox.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column, relationship

from server.alarms.models import Alarm
from server.core.base import Base, BigId, utc_now

_JSON = JSON().with_variant(JSONB(), "postgresql")


class NotificationTarget(Base):
    """A webhook that receives the alarms of one case on behalf of the case's judge or creditor."""

    __tablename__ = "notification_targets"
    __table_args__ = (UniqueConstraint("case_no", "role", "url"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    case_no: Mapped[str] = mapped_column(ForeignKey("cases.case_no"), index=True)
    role: Mapped[str] = mapped_column(String(16), comment="judge or creditor")
    url: Mapped[str] = mapped_column(Text)
    secret: Mapped[str | None] = mapped_column(
        Text, comment="HMAC key of this target; null: the global notify.webhook_secret_file."
    )
    created_at: Mapped[datetime] = mapped_column(default=utc_now)


class Notification(Base):
    """One alarm to deliver to one target: written with the alarm, sent and retried by the notification worker."""

    __tablename__ = "notifications"
    __table_args__ = (Index(None, "state", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    alarm_id: Mapped[int] = mapped_column(ForeignKey("alarms.id"), index=True)
    target_id: Mapped[int | None] = mapped_column(
        ForeignKey("notification_targets.id"), comment="Null once the target is removed (role and url stay)."
    )
    role: Mapped[str] = mapped_column(String(16))
    url: Mapped[str] = mapped_column(Text, comment="The target's URL when the notification was written.")
    state: Mapped[str] = mapped_column(String(16), comment="pending, sent or failed (gave up).")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(comment="Not before this; also the lease of a send under way.")
    created_at: Mapped[datetime]
    sent_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)

    alarm: Mapped[Alarm] = relationship()
    target: Mapped[NotificationTarget | None] = relationship()


class InboxMessage(Base):
    """A message in one user's in-app inbox (a removal request filed, decided, …), Chinese first with English."""

    __tablename__ = "inbox_messages"
    __table_args__ = (Index(None, "user_id", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(default=utc_now)
    kind: Mapped[str] = mapped_column(String(32), comment="What happened, e.g. removal.filed, removal.approved.")
    case_no: Mapped[str] = mapped_column(ForeignKey("cases.case_no"), index=True)
    text_zh: Mapped[str] = mapped_column(Text)
    text_en: Mapped[str] = mapped_column(Text)
    ref: Mapped[str] = mapped_column(String(64), default="", comment="What it is about, e.g. removal-request:12.")
    read_at: Mapped[datetime | None]
