"""Tables of alarms, notifications and the per-seal hash-chain state.

Registered on ``server.models.Base`` (``server/models.py`` imports this module at its end). ``acknowledged_by`` and
``closed_by`` hold a user id without a foreign key: users belong to the auth package, and ``null`` means the system.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column, relationship

from server.models import Base, BigId, Event, utc_now

_JSON = JSON().with_variant(JSONB(), "postgresql")


class ChainState(Base):
    """Where a seal's hash chain stands: the highest ``seq`` stored and the ranges below it still missing."""

    __tablename__ = "chain_state"

    device_id: Mapped[str] = mapped_column(ForeignKey("seals.device_id"), primary_key=True)
    max_seq: Mapped[int] = mapped_column(BigInteger, default=0, comment="Highest seq stored (0: none yet).")
    missing: Mapped[list[Any]] = mapped_column(
        _JSON, default=list, comment="Sorted [first, last] seq ranges below max_seq not stored yet."
    )
    updated_at: Mapped[datetime] = mapped_column(default=utc_now)


class Alarm(Base):
    """Something on a sealed site that needs a person: opened by the ingest or the liveness check, folded, closed."""

    __tablename__ = "alarms"
    __table_args__ = (
        Index(None, "device_id", "state"),
        Index(None, "case_no", "id"),
        Index(None, "state", "id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    case_no: Mapped[str] = mapped_column(ForeignKey("cases.case_no"))
    device_id: Mapped[str] = mapped_column(ForeignKey("seals.device_id"))
    kind: Mapped[str] = mapped_column(String(32), comment="server.alarms.state.AlarmKind")
    severity: Mapped[str] = mapped_column(String(16), comment="medium, high or critical; follows from the kind.")
    state: Mapped[str] = mapped_column(String(16), comment="open, acknowledged or closed.")
    opened_at: Mapped[datetime]
    last_seen_at: Mapped[datetime] = mapped_column(comment="When the last repeat was folded into this alarm.")
    count: Mapped[int] = mapped_column(Integer, default=1, comment="Occurrences folded into this alarm.")
    acknowledged_by: Mapped[int | None] = mapped_column(BigInteger)
    acknowledged_at: Mapped[datetime | None]
    acknowledged_note: Mapped[str | None] = mapped_column(Text)
    closed_by: Mapped[int | None] = mapped_column(BigInteger, comment="Null with a closed_at: closed by the system.")
    closed_at: Mapped[datetime | None]
    closed_note: Mapped[str | None] = mapped_column(Text)
    first_event_id: Mapped[int | None] = mapped_column(ForeignKey("events.id"))
    last_event_id: Mapped[int | None] = mapped_column(ForeignKey("events.id"))
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)

    first_event: Mapped[Event | None] = relationship(foreign_keys=[first_event_id])
    last_event: Mapped[Event | None] = relationship(foreign_keys=[last_event_id])


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
