"""The tables of removal requests: the request, its proof files, the creditor's views, the disarm commands issued
for it, the seals lifted without their acknowledgement, and its history (every transition: who, when, the note —
the audit log has the same entries — and, for the step that made it final, its record of the seals).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column, relationship

from server.core.base import Base, BigId, utc_now


class RemovalRequest(Base):
    """A debtor's request to lift the seizure of a case (解除查封申请)."""

    __tablename__ = "removal_requests"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    case_no: Mapped[str] = mapped_column(ForeignKey("cases.case_no"), index=True)
    open_case_no: Mapped[str | None] = mapped_column(
        String(64), unique=True, comment="The case number while the request is open, else null: one open per case."
    )
    state: Mapped[str] = mapped_column(String(16), comment="server.removal.state.RemovalState")
    ground: Mapped[str] = mapped_column(String(32), comment="server.removal.grounds.RemovalGround")
    statement: Mapped[str] = mapped_column(Text, comment="The debtor's statement.")
    filed_by: Mapped[int] = mapped_column(ForeignKey("users.id"))
    filed_at: Mapped[datetime] = mapped_column(default=utc_now)
    views_due_at: Mapped[datetime] = mapped_column(comment="The creditor's written views are taken until then.")
    decided_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    decided_at: Mapped[datetime | None]
    decision_reasons: Mapped[str | None] = mapped_column(Text, comment="The judge's reasons (approval or rejection).")
    disarmed_at: Mapped[datetime | None] = mapped_column(comment="When the last seal's signed ack was settled.")
    lifted_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    lifted_at: Mapped[datetime | None]
    updated_at: Mapped[datetime] = mapped_column(default=utc_now)

    proofs: Mapped[list[RemovalProof]] = relationship(order_by="RemovalProof.id", viewonly=True)
    views: Mapped[list[RemovalView]] = relationship(order_by="RemovalView.id", viewonly=True)
    disarms: Mapped[list[RemovalDisarm]] = relationship(order_by="RemovalDisarm.command_id", viewonly=True)
    steps: Mapped[list[RemovalStep]] = relationship(order_by="RemovalStep.id", viewonly=True)
    waivers: Mapped[list[RemovalWaiver]] = relationship(order_by="RemovalWaiver.id", viewonly=True)


class RemovalProof(Base):
    """A proof file of a request (PDF, JPEG or PNG, checked by content), stored as ``<proof_dir>/<sha256>.<ext>``."""

    __tablename__ = "removal_proofs"
    __table_args__ = (UniqueConstraint("request_id", "sha256"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    request_id: Mapped[int] = mapped_column(ForeignKey("removal_requests.id"), index=True)
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(BigInteger)
    media_type: Mapped[str] = mapped_column(String(32), comment="application/pdf, image/jpeg or image/png.")
    filename: Mapped[str] = mapped_column(String(255), comment="The name it was uploaded under (display only).")
    uploaded_at: Mapped[datetime] = mapped_column(default=utc_now)


class RemovalView(Base):
    """The creditor's written view on a request (申请执行人意见); the judge sees every one."""

    __tablename__ = "removal_views"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    request_id: Mapped[int] = mapped_column(ForeignKey("removal_requests.id"), index=True)
    author_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    at: Mapped[datetime] = mapped_column(default=utc_now)
    text: Mapped[str] = mapped_column(Text)


class RemovalDisarm(Base):
    """A signed ``disarm`` issued for a request: one per seal at approval, one more per re-send."""

    __tablename__ = "removal_disarms"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    request_id: Mapped[int] = mapped_column(ForeignKey("removal_requests.id"), index=True)
    command_id: Mapped[int] = mapped_column(ForeignKey("commands.id"), unique=True)
    device_id: Mapped[str] = mapped_column(ForeignKey("seals.device_id"))


class RemovalWaiver(Base):
    """The judge's decision that one seal of a request is lifted without its acknowledgement (it never answered:
    stolen, broken, its battery dead), and what the officer found of it on site."""

    __tablename__ = "removal_waivers"
    __table_args__ = (UniqueConstraint("request_id", "device_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    request_id: Mapped[int] = mapped_column(ForeignKey("removal_requests.id"), index=True)
    device_id: Mapped[str] = mapped_column(ForeignKey("seals.device_id"))
    decided_by: Mapped[int] = mapped_column(ForeignKey("users.id"))
    decided_at: Mapped[datetime] = mapped_column(default=utc_now)
    reasons: Mapped[str] = mapped_column(Text, comment="The judge's reasons.")
    found: Mapped[str | None] = mapped_column(
        String(16), comment="removed, destroyed or missing, as the officer found it on site (server.removal.lifting)."
    )


class RemovalStep(Base):
    """One transition of a request: who, when, from which state to which, and the note."""

    __tablename__ = "removal_steps"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    request_id: Mapped[int] = mapped_column(ForeignKey("removal_requests.id"), index=True)
    at: Mapped[datetime] = mapped_column(default=utc_now)
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), comment="Null: the server itself.")
    actor: Mapped[str] = mapped_column(String(64), comment="The actor's username then, or '-'.")
    action: Mapped[str] = mapped_column(String(32), comment="file, or a server.removal.state.RemovalAction")
    from_state: Mapped[str | None] = mapped_column(String(16), comment="Null for the filing itself.")
    to_state: Mapped[str] = mapped_column(String(16))
    note: Mapped[str] = mapped_column(Text, default="")
    note_said: Mapped[dict[str, Any] | None] = mapped_column(
        JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql"),
        comment="The server's note as a catalogue key and its values (server.words.said_json), said in the "
        "reader's language; null for a person's note, and for every step stored before migration 0026.",
    )
    seals: Mapped[list[dict[str, Any]] | None] = mapped_column(
        JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql"),
        comment="The step that made the request final (lift, abort): each seal's progress as that step read it, "
        "the request's record from then on (server.removal.record). Null for any other step, and for a final step "
        "recorded before migration 0019.",
    )
