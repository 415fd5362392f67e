"""The ingest's own tables: the quarantine of refused messages and each seal's hash-chain state."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from server.core.base import Base, BigId, utc_now

#: The seal account a refused message came from: :func:`server.ingest.results.account_of` (column comments).
QUARANTINE_ACCOUNT = (
    "The seal account: the device id of its seal/v1/<device_id>/... topic, even if the rest did not parse "
    "(null: a topic under none; rows from before 0025: null if the topic did not parse)."
)
COUNTS_ACCOUNT = "The seal account, as in the quarantine; empty for topics under no device id."


class QuarantinedMessage(Base):
    """A message the ingest refused, kept for inspection; it never becomes an event."""

    __tablename__ = "quarantine"
    #: A seal's latest refusals of a reason, newest first (server.ingest.late_chain: ``wrong_case``/``unbound_seal``).
    __table_args__ = (Index(None, "device_id", "reason", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    received_at: Mapped[datetime] = mapped_column(index=True)
    topic: Mapped[str] = mapped_column(Text)
    device_id: Mapped[str | None] = mapped_column(String(64), index=True, comment=QUARANTINE_ACCOUNT)
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


class QuarantineCount(Base):
    """Refused messages of one seal account, reason and window counted without a quarantine row of their own: those
    past the account's budget of rows per window (``[ingest] quarantine_seal_rows``, :mod:`.refusal_count`)."""

    __tablename__ = "quarantine_counts"
    __table_args__ = (UniqueConstraint("device_id", "reason", "window_start"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    device_id: Mapped[str] = mapped_column(String(64), comment=COUNTS_ACCOUNT)
    reason: Mapped[str] = mapped_column(String(32), comment="Reason code, as in the quarantine.")
    window_start: Mapped[datetime] = mapped_column(index=True, comment="The window's start (quarantine_window_s).")
    count: Mapped[int] = mapped_column(BigInteger, comment="Messages counted; their bytes were not kept.")
    bytes: Mapped[int] = mapped_column(BigInteger, comment="Their sizes as received, added up.")
    first_received_at: Mapped[datetime]
    last_received_at: Mapped[datetime]


_JSON = JSON().with_variant(JSONB(), "postgresql")


class ChainState(Base):
    """Where a seal's hash chain stands: the highest ``seq`` stored and the ranges below it still missing (at most
    ``MAX_TRACKED_GAPS`` of them; the gaps past those counted in a last ``[first, last, count]``:
    :mod:`server.ingest.chain`), and when each was recorded, until its ``missing_events`` alarm is raised
    (:mod:`server.ingest.gap_wait`)."""

    __tablename__ = "chain_state"

    device_id: Mapped[str] = mapped_column(ForeignKey("seals.device_id"), primary_key=True)
    max_seq: Mapped[int] = mapped_column(BigInteger, default=0, comment="Highest seq stored (0: none yet).")
    missing: Mapped[list[Any]] = mapped_column(
        _JSON, default=list, comment="Sorted [first, last] seq ranges below max_seq not stored yet."
    )
    missing_since: Mapped[list[Any] | None] = mapped_column(
        _JSON,
        comment="For each entry of missing, in order: when it was recorded (the database's clock, ISO 8601), or null "
        "once missing_events was raised for it. Null (rows from before 0022): every entry raised.",
    )
    unannounced_since: Mapped[datetime | None] = mapped_column(
        comment="The oldest time in missing_since (null: none): a gap not raised yet, due gap_wait_s after it."
    )
    case_held_until: Mapped[datetime | None] = mapped_column(
        comment="While the seal's events refused as wrong_case may still be carried into their old case by the "
        "chain (a moved seal's drain): when case_mismatch is raised for those still refused (null: none held)."
    )
    updated_at: Mapped[datetime] = mapped_column(default=utc_now)
