"""The court server's tables, as SQLAlchemy 2 typed ORM classes.

Every timestamp is a timezone-aware UTC ``datetime`` in Python (:class:`UTCDateTime`), on SQLite and PostgreSQL
alike. Constraint names follow one naming convention so that Alembic migrations can refer to them.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

#: A 64-bit id on PostgreSQL; SQLite only auto-increments a column declared exactly ``INTEGER PRIMARY KEY``.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime; naive values are refused rather than guessed."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: store timezone-aware UTC datetimes only")
        value = value.astimezone(UTC)
        # SQLite has no time zones: store naive UTC there.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utc_now() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSON().with_variant(JSONB(), "postgresql")}


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


class Event(Base):
    """A verified event, stored with the signed envelope exactly as received."""

    __tablename__ = "events"
    __table_args__ = (
        UniqueConstraint("device_id", "seq"),
        Index(None, "case_no", "id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    device_id: Mapped[str] = mapped_column(ForeignKey("seals.device_id"))
    case_no: Mapped[str] = mapped_column(ForeignKey("cases.case_no"))
    seq: Mapped[int] = mapped_column(BigInteger)
    event_id: Mapped[str] = mapped_column(String(36), unique=True)
    type: Mapped[str] = mapped_column(String(32))
    ts: Mapped[datetime] = mapped_column(comment="When it happened, by the seal's clock.")
    received_at: Mapped[datetime]
    prev_hash: Mapped[str | None] = mapped_column(String(64))
    sig: Mapped[str] = mapped_column(String(128))
    payload: Mapped[dict[str, Any]]
    raw: Mapped[bytes] = mapped_column(LargeBinary, comment="The signed envelope bytes exactly as received.")


class QuarantinedMessage(Base):
    """A message the ingest refused, kept for inspection; it never becomes an event."""

    __tablename__ = "quarantine"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    received_at: Mapped[datetime] = mapped_column(index=True)
    topic: Mapped[str] = mapped_column(Text)
    device_id: Mapped[str | None] = mapped_column(String(64), index=True, comment="From the topic, if it parsed.")
    reason: Mapped[str] = mapped_column(String(32), comment="Reason code, also the metrics label.")
    detail: Mapped[str] = mapped_column(Text, default="")
    size: Mapped[int] = mapped_column(Integer, comment="Size of the message as received.")
    raw: Mapped[bytes] = mapped_column(LargeBinary, comment="The message bytes, cut at QUARANTINE_RAW_LIMIT.")
    sha256: Mapped[str | None] = mapped_column(
        String(64), index=True, comment="SHA-256 of the whole message as received (null on rows from before 0005)."
    )
    copies: Mapped[int] = mapped_column(
        Integer, default=1, server_default="1", comment="How many times these bytes came, for this reason."
    )
    last_received_at: Mapped[datetime | None] = mapped_column(comment="When the last copy came (null: only one).")


class Snapshot(Base):
    """A picture a seal sent, recorded once per case; the file is ``snapshot_dir/<sha256>.jpg``.

    The same bytes may come from seals of two cases (two covered lenses give the same black frame): each case gets
    its row, and both rows name the one file.
    """

    __tablename__ = "snapshots"
    __table_args__ = (UniqueConstraint("sha256", "case_no"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64))
    device_id: Mapped[str] = mapped_column(ForeignKey("seals.device_id"), index=True)
    case_no: Mapped[str] = mapped_column(ForeignKey("cases.case_no"), index=True)
    size: Mapped[int] = mapped_column(Integer)
    received_at: Mapped[datetime]


from server import provisioning as _provisioning_models  # noqa: E402,F401
from server.alarms import models as _alarm_models  # noqa: E402,F401
from server.auth import models as _auth_models  # noqa: E402,F401
from server.commands import models as _command_models  # noqa: E402,F401
