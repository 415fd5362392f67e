"""The table of every notice issued: its facts exactly as printed, their hash, and whether it still stands."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from server.core.base import Base, BigId


class Notice(Base):
    """A printed seal notice (查封公告). A newer notice for the same seal supersedes it; unbinding its seal (the
    seizure lifted, or the seal taken off by hand) revokes it, and so may a clerk."""

    __tablename__ = "notices"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    device_id: Mapped[str] = mapped_column(ForeignKey("seals.device_id"), index=True)
    case_no: Mapped[str] = mapped_column(ForeignKey("cases.case_no"), index=True)
    issued_at: Mapped[datetime] = mapped_column(comment="Whole seconds, as in the token.")
    issued_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"), comment="Null when done on the CLI.")
    facts: Mapped[str] = mapped_column(Text, comment="The printed facts, canonical JSON (RFC 8785), verbatim.")
    facts_sha256: Mapped[str] = mapped_column(String(64), comment="SHA-256 of facts (hex), as in the token.")
    key_id: Mapped[str] = mapped_column(String(8), comment="The notice key that signed the token (hex).")
    expires_at: Mapped[datetime] = mapped_column(comment="The token's expiry (whole seconds).")
    superseded_at: Mapped[datetime | None]
    superseded_by: Mapped[int | None] = mapped_column(ForeignKey("notices.id"), comment="The notice that replaced it.")
    revoked_at: Mapped[datetime | None]
    revoked_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    revoked_reason: Mapped[str | None] = mapped_column(
        String(16), comment="lifted, unbound or revoked (server.notices.service.Revocation)."
    )
    revoked_note: Mapped[str | None] = mapped_column(Text, comment="Why, in words (shown on the notice's page).")
