"""The exports made: which checkpoint each led to, so later exports carry consistency proofs from it. Append-only
(a database trigger refuses UPDATE and DELETE, :mod:`server.core.append_only`)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from server.core.append_only import append_only
from server.core.base import Base, BigId


class EvidenceExport(Base):
    """One export of a case's evidence (its audit entry says who asked)."""

    __tablename__ = "evidence_exports"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    case_no: Mapped[str] = mapped_column(ForeignKey("cases.case_no"), index=True)
    checkpoint_size: Mapped[int] = mapped_column(
        BigInteger, index=True, comment="The tree size of the checkpoint the bundle's proofs lead to."
    )
    exported_at: Mapped[datetime]
    exported_by: Mapped[str] = mapped_column(String(64), comment="The user's name, or the CLI's actor.")
    events: Mapped[int] = mapped_column(Integer, comment="How many events the bundle holds.")
    manifest_sha256: Mapped[str] = mapped_column(String(64), comment="SHA-256 (hex) of the bundle's manifest.json.")


append_only(EvidenceExport.__table__)  # type: ignore[arg-type]
