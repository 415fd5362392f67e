"""The tables of the evidence: verified events with their signed bytes, the snapshots' records and the pictures the
events name, and the Merkle log over the events and the audit entries with its signed checkpoints. Events and the
log's tables are append-only (a database trigger refuses UPDATE and DELETE, :mod:`server.core.append_only`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    literal_column,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from server.core.append_only import append_only
from server.core.base import Base, BigId

#: The events a case's timeline shows: all but heartbeats (most of a case's events), as the predicate of the partial
#: index that finds them; a query names it by :data:`NOT_HEARTBEAT` (a literal: PostgreSQL uses a partial index only
#: for a query whose own constants imply its predicate, never a bound parameter's).
SHOWN_EVENTS = "type <> 'heartbeat'"


class Event(Base):
    """A verified event, stored with the signed envelope exactly as received.

    Its indexes let every page and listing read the newest rows it shows and stop: a case's (``case_no, id``), a
    case's but heartbeats (the partial ``ix_events_case_no_id_shown``), a seal's (``device_id, id``; ``device_id,
    seq``) and a seal's of one type (``device_id, type, id``: its last heartbeat, its agent's starts).
    """

    __tablename__ = "events"
    __table_args__ = (
        UniqueConstraint("device_id", "seq"),
        Index(None, "case_no", "id"),
        Index(None, "device_id", "id"),
        Index(None, "device_id", "type", "id"),
        Index(
            "ix_events_case_no_id_shown",
            "case_no",
            "id",
            sqlite_where=text(SHOWN_EVENTS),
            postgresql_where=text(SHOWN_EVENTS),
        ),
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


class Snapshot(Base):
    """A picture a seal sent, recorded once per case and seal; the file is ``snapshot_dir/<sha256>.jpg``. Its case is
    the one whose events name it (:class:`SnapshotName`); a picture no stored event names yet is filed under the seal's
    case (or last case) meanwhile, and moves when the event that names it arrives.

    The same bytes may come from two seals (two covered lenses give the same black frame): each seal's delivery gets
    its row in its case, all naming the one file, so that filing one seal's picture again never takes another's.
    """

    __tablename__ = "snapshots"
    #: (device_id, received_at): a seal's pictures of the last day, for its budget (server.ingest.unnamed_budget).
    __table_args__ = (UniqueConstraint("sha256", "device_id", "case_no"), Index(None, "device_id", "received_at"))

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64))
    device_id: Mapped[str] = mapped_column(ForeignKey("seals.device_id"), index=True)
    case_no: Mapped[str] = mapped_column(ForeignKey("cases.case_no"), index=True)
    size: Mapped[int] = mapped_column(Integer)
    received_at: Mapped[datetime]


class SnapshotName(Base):
    """That a stored signed event of ``case_no`` from seal ``device_id`` names the picture ``sha256`` (its payload's
    ``snapshots`` or ``snapshot``): the picture is evidence of that case, whichever case the seal was bound to when
    the picture itself arrived. Written with the event; the snapshot's ingest files the picture by these rows
    (:mod:`server.ingest.snapshot_filing`)."""

    __tablename__ = "snapshot_names"
    __table_args__ = (UniqueConstraint("sha256", "device_id", "case_no"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64))
    device_id: Mapped[str] = mapped_column(ForeignKey("seals.device_id"), index=True)
    case_no: Mapped[str] = mapped_column(ForeignKey("cases.case_no"), index=True)


class LogLeaf(Base):
    """One leaf of the server's append-only Merkle log (:mod:`server.evidence.merkle`): a stored event or an audit
    entry, in the order of storing. Written in the transaction that stores the event or the entry."""

    __tablename__ = "log_leaves"
    __table_args__ = (
        CheckConstraint(
            "(event_id IS NULL AND audit_id IS NOT NULL) OR (event_id IS NOT NULL AND audit_id IS NULL)",
            name="one_kind",
        ),
    )

    leaf_index: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    event_id: Mapped[int | None] = mapped_column(ForeignKey("events.id"), unique=True)
    audit_id: Mapped[int | None] = mapped_column(ForeignKey("audit_log.id"), unique=True)
    leaf_hash: Mapped[bytes] = mapped_column(
        LargeBinary(32), comment="SHA-256(0x00 || events.raw), or SHA-256(0x00 || audit_log.record)."
    )


class LogNode(Base):
    """The hash of a complete subtree of the log above the leaves: ``2**level`` leaves from ``node_index *
    2**level``. Never changes once written, so a proof is a few lookups."""

    __tablename__ = "log_nodes"

    level: Mapped[int] = mapped_column(SmallInteger, primary_key=True, autoincrement=False)
    node_index: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    hash: Mapped[bytes] = mapped_column(LargeBinary(32))


class LogCheckpoint(Base):
    """A signed checkpoint of the log (C2SP tlog-checkpoint in a signed note), as served."""

    __tablename__ = "log_checkpoints"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    tree_size: Mapped[int] = mapped_column(BigInteger, unique=True)
    root_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    note: Mapped[str] = mapped_column(Text, comment="The signed note, byte for byte as served.")
    made_at: Mapped[datetime]


class LogTimestamp(Base):
    """The RFC 3161 time stamp of a signed checkpoint (:mod:`server.evidence.timestamps`): the TSA's answer over
    SHA-256 of the checkpoint's note bytes, verified before it is kept, with the TSA's certificate chain."""

    __tablename__ = "log_timestamps"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    checkpoint_id: Mapped[int] = mapped_column(ForeignKey("log_checkpoints.id"), unique=True)
    response: Mapped[bytes] = mapped_column(
        LargeBinary, comment="The DER TimeStampResp exactly as the TSA returned it (its token inside)."
    )
    chain_pem: Mapped[str] = mapped_column(
        Text, comment="The TSA's certificates (PEM): those in the token, and the pinned root it led to if any."
    )
    gen_time: Mapped[datetime] = mapped_column(comment="When the TSA says the note existed (the token's genTime).")
    tsa_url: Mapped[str] = mapped_column(Text, comment="The TSA asked.")
    tsa_subject: Mapped[str] = mapped_column(Text, comment="The subject of the TSA's signing certificate.")
    pinned: Mapped[bool] = mapped_column(comment="The chain was verified to [evidence] tsa_ca_file's roots.")
    obtained_at: Mapped[datetime]


for _table in (Event.__table__, LogLeaf.__table__, LogNode.__table__, LogCheckpoint.__table__, LogTimestamp.__table__):
    append_only(_table)  # type: ignore[arg-type]


#: ``WHERE`` the events a case's timeline shows, as its partial index's predicate says (:data:`SHOWN_EVENTS`).
NOT_HEARTBEAT = Event.type != literal_column("'heartbeat'")
