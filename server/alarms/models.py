"""Tables of alarms, notifications and the per-seal hash-chain state.

Registered on ``server.models.Base`` (``server/models.py`` imports this module at its end). ``acknowledged_by`` and
``closed_by`` hold a user id without a foreign key: users belong to the auth package, and ``null`` means the system.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, Integer, String, Text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column, relationship, validates

from server.core.base import Base, BigId
from server.core.whole_numbers import whole_numbers
from server.evidence.models import Event

_JSON = JSON().with_variant(JSONB(), "postgresql")


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

    @validates("details")
    def _whole(self, _key: str, details: dict[str, Any]) -> dict[str, Any]:
        return whole_numbers(details, what=f"details of a {self.kind} alarm")  # (every later bundle of the case)
