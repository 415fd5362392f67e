"""The ``commands`` table: every court → seal command, as signed and published, and what became of it.

Registered on ``server.models.Base`` (``server/models.py`` imports this module at its end). The row id *is* the
``command_id`` on the wire: the database's increasing id is strictly increasing per device too, as a seal requires
(ids are allocated with the seal's row locked, so two commands to one seal commit in id order).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, Integer, LargeBinary, String, Text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from server.core.base import Base, BigId, utc_now

_JSON = JSON().with_variant(JSONB(), "postgresql")


class CourtCommand(Base):
    """A signed command to one seal: pending until the seal's signed answer arrives, or expired without one."""

    __tablename__ = "commands"
    __table_args__ = (
        Index(None, "device_id", "id"),
        Index(None, "state", "expires_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, comment="The command_id on the wire.")
    device_id: Mapped[str] = mapped_column(ForeignKey("seals.device_id"))
    case_no: Mapped[str] = mapped_column(ForeignKey("cases.case_no"), index=True)
    action: Mapped[str] = mapped_column(String(16), comment="seal_protocol.commands.CommandAction")
    args: Mapped[dict[str, Any]] = mapped_column(default=dict)
    issued_by: Mapped[int] = mapped_column(ForeignKey("users.id"))
    issued_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    state: Mapped[str] = mapped_column(String(16), comment="pending, acknowledged, rejected or expired.")
    signed: Mapped[bytes] = mapped_column(LargeBinary, comment="The signed command exactly as published.")
    broker_accepted_at: Mapped[datetime | None] = mapped_column(
        comment="When the broker acknowledged the publish (PUBACK). Not delivery: only the seal's answer is."
    )
    publish_attempts: Mapped[int] = mapped_column(Integer, default=0)
    publish_error: Mapped[str | None] = mapped_column(Text, comment="Why the last publish attempt failed, if it did.")
    answered_at: Mapped[datetime | None] = mapped_column(comment="When the court received the seal's answer.")
    answer_seq: Mapped[int | None] = mapped_column(BigInteger, comment="seq of the command_ack/command_rejected event.")
    result: Mapped[dict[str, Any] | None] = mapped_column(_JSON, comment="The answer's payload.")
    reason: Mapped[str | None] = mapped_column(String(32), comment="Why the seal rejected it (RejectReason).")
    updated_at: Mapped[datetime] = mapped_column(default=utc_now)


class CommandForm(Base):
    """A command form of the pages, used: its one-use id (rendered into the form: :mod:`server.web.form_ids`) and
    the command it sent. The same form sent again (a double click, the back button) finds its row and sends
    nothing; rows older than a form may be are deleted."""

    __tablename__ = "command_forms"

    form_id: Mapped[str] = mapped_column(String(64), primary_key=True, comment="The form's one-use id.")
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), comment="Who sent it.")
    command_id: Mapped[int | None] = mapped_column(ForeignKey("commands.id"), comment="The command it sent.")
    used_at: Mapped[datetime] = mapped_column(index=True)
