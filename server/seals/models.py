"""The tables of cases, seals, which case each seal was bound to when, and the broker accounts."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import (
    Boolean,
    ForeignKey,
    Index,
    String,
    Text,
)
from sqlalchemy.orm import Mapped, mapped_column

from server.core.base import Base, BigId, UTCDateTime, utc_now


class Case(Base):
    """An enforcement case (执行案件) that seals can be bound to."""

    __tablename__ = "cases"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    case_no: Mapped[str] = mapped_column(String(64), unique=True, comment="案号, e.g. (2021)苏0214执1234号")
    court: Mapped[str] = mapped_column(String(128), default="")
    judge: Mapped[str] = mapped_column(String(128), default="")
    address: Mapped[str] = mapped_column(String(256), default="", comment="Where the sealed property is.")
    applicant: Mapped[str] = mapped_column(String(256), default="", comment="申请执行人, the creditor.")
    debtor: Mapped[str] = mapped_column(String(256), default="", comment="被执行人, the debtor.")
    created_at: Mapped[datetime] = mapped_column(default=utc_now)


class Seal(Base):
    """One installed device, bound to at most one case at a time, with its last known state."""

    __tablename__ = "seals"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    device_id: Mapped[str] = mapped_column(String(64), unique=True)
    public_key: Mapped[str] = mapped_column(String(64), comment="Ed25519 public key, base64 of the raw 32 bytes.")
    case_no: Mapped[str | None] = mapped_column(ForeignKey("cases.case_no"), index=True)
    location: Mapped[str] = mapped_column(String(256), default="")
    registered_at: Mapped[datetime] = mapped_column(default=utc_now)
    status: Mapped[str | None] = mapped_column(String(16), comment="Last reported status: online / offline.")
    status_changed_at: Mapped[datetime | None] = mapped_column(comment="When the court received that status.")
    last_seen_at: Mapped[datetime | None] = mapped_column(comment="When the court last received a valid message.")
    last_event_at: Mapped[datetime | None] = mapped_column(comment="When the court last stored an event.")


class SealBinding(Base):
    """A period during which a seal was bound to a case; ``unbound_at`` is null while it lasts."""

    __tablename__ = "seal_bindings"
    __table_args__ = (Index(None, "device_id", "bound_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    device_id: Mapped[str] = mapped_column(ForeignKey("seals.device_id"))
    case_no: Mapped[str] = mapped_column(ForeignKey("cases.case_no"), index=True)
    bound_at: Mapped[datetime] = mapped_column(default=utc_now)
    bound_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"), comment="Null when done on the CLI.")
    unbound_at: Mapped[datetime | None]
    unbound_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"))


class AccountKind(StrEnum):
    SEAL = "seal"
    SERVER = "server"


class MqttAccount(Base):
    """One broker login. For a seal, ``username`` is its device id."""

    __tablename__ = "mqtt_accounts"

    username: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), comment="'seal' or 'server'.")
    password_hash: Mapped[str] = mapped_column(Text, comment="Mosquitto $7$ PBKDF2-SHA512 hash; never the password.")
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    rotated_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
