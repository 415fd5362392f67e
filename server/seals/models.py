"""The tables of cases, seals, which case each seal was bound to when, and the broker accounts."""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum

from sqlalchemy import (
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from server.core.base import Base, BigId, UTCDateTime, utc_now


class Court(Base):
    """A people's court, by the code its case numbers carry (法院代字, e.g. 苏0214)."""

    __tablename__ = "courts"

    code: Mapped[str] = mapped_column(String(16), primary_key=True, comment="法院代字, e.g. 苏0214.")
    name: Mapped[str] = mapped_column(String(128), comment="e.g. 无锡市滨湖区人民法院.")
    phone: Mapped[str] = mapped_column(String(32), default="", comment="The number printed on notices.")
    address: Mapped[str] = mapped_column(String(256), default="")


class CaseStatus(StrEnum):
    """Where a case's seizure stands; :data:`server.seals.cases.CASE_TRANSITIONS` says how it moves."""

    OPEN = "open"  # registered, no seal bound yet
    SEALED = "sealed"  # the seizure stands: a seal was bound
    LIFTING = "lifting"  # a removal was approved; the seals are being disarmed and removed
    LIFTED = "lifted"  # the seals are off the premises
    CLOSED = "closed"

    @property
    def hides_armed_state(self) -> bool:
        """Whether a seal's armed state is withheld from whoever may stand at its door — the notice's public page
        (:func:`server.notices.service.check_notice`) and the debtor's portal (:mod:`server.web.removal_view`): while
        the case is being lifted, a seal may stand disarmed before an officer has come."""
        return self is CaseStatus.LIFTING


class Case(Base):
    """An enforcement case (执行案件) that seals can be bound to."""

    __tablename__ = "cases"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    case_no: Mapped[str] = mapped_column(String(64), unique=True, comment="案号, e.g. (2021)苏0214执1234号")
    court_code: Mapped[str | None] = mapped_column(
        ForeignKey("courts.code"), index=True, comment="The court the case number names; null for a legacy number."
    )
    judge: Mapped[str] = mapped_column(String(128), default="")
    judge_phone: Mapped[str] = mapped_column(String(32), default="", comment="The judge's number on the notice.")
    address: Mapped[str] = mapped_column(String(256), default="", comment="Where the sealed property is.")
    sealed_property: Mapped[str] = mapped_column(String(256), default="", comment="What is sealed (查封财产).")
    ruling_no: Mapped[str] = mapped_column(
        String(64),
        default="",
        comment="The enforcement ruling (执行裁定书) the seizure rests on, e.g. (2021)苏0214执1234号之一.",
    )
    applicant: Mapped[str] = mapped_column(String(256), default="", comment="申请执行人, the creditor.")
    debtor: Mapped[str] = mapped_column(String(256), default="", comment="被执行人, the debtor.")
    seizure_expires_on: Mapped[date | None] = mapped_column(comment="查封期限: the last day of the seizure.")
    status: Mapped[str] = mapped_column(String(16), default=CaseStatus.OPEN.value, comment="A CaseStatus.")
    status_changed_at: Mapped[datetime | None]
    held_by: Mapped[str | None] = mapped_column(
        String(64),
        comment="What holds the case, e.g. removal-request:12 while that request is open: its seals are then unbound, "
        "and the case closed, only through it.",
    )
    created_at: Mapped[datetime] = mapped_column(default=utc_now)

    court_row: Mapped[Court | None] = relationship(lazy="joined")

    @property
    def court_name(self) -> str:
        return self.court_row.name if self.court_row is not None else ""


#: The seal's storage report (its retained ``online`` status's ``storage``: docs/protocol.md, "Status"), unsigned.
STORAGE_FAULT_COMMENT = (
    "Why the seal said, in its last standing online status, that it cannot store events (read_only, full, io_error); "
    "null: it did not say so. The seal's unsigned report, not evidence."
)
STORAGE_HELD_COMMENT = "How many events the seal said it holds in memory only, with that report."
STORAGE_SINCE_COMMENT = "Since when, by the seal's clock, it said it cannot store (its first refused commit)."


class Seal(Base):
    """One installed device, bound to at most one case at a time, with its last known state."""

    __tablename__ = "seals"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    device_id: Mapped[str] = mapped_column(String(64), unique=True)
    # Canonical base64, each seal's own: unique (server.seals.seal_keys; migration 0021).
    public_key: Mapped[str] = mapped_column(
        String(64),
        unique=True,
        index=True,
        comment="Ed25519 public key, base64 of the raw 32 bytes.",
    )
    case_no: Mapped[str | None] = mapped_column(ForeignKey("cases.case_no"), index=True)
    location: Mapped[str] = mapped_column(String(256), default="")
    registered_at: Mapped[datetime] = mapped_column(default=utc_now)
    status: Mapped[str | None] = mapped_column(String(16), comment="Last reported status: online / offline.")
    status_changed_at: Mapped[datetime | None] = mapped_column(comment="When the court received that status.")
    status_ts: Mapped[datetime | None] = mapped_column(
        comment="That status's own ts: its connection's stamp, which orders the statuses of a seal."
    )
    last_seen_at: Mapped[datetime | None] = mapped_column(comment="When the court last received a valid message.")
    last_event_at: Mapped[datetime | None] = mapped_column(comment="When the court last stored an event.")
    armed: Mapped[bool | None] = mapped_column(comment="Armed, as the seal's latest signed event that tells says.")
    armed_at: Mapped[datetime | None] = mapped_column(comment="The ts of that event.")
    armed_seq: Mapped[int | None] = mapped_column(BigInteger, comment="The seq of that event.")
    storage_fault: Mapped[str | None] = mapped_column(String(16), comment=STORAGE_FAULT_COMMENT)
    storage_held: Mapped[int | None] = mapped_column(Integer, comment=STORAGE_HELD_COMMENT)
    storage_since: Mapped[datetime | None] = mapped_column(comment=STORAGE_SINCE_COMMENT)


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
