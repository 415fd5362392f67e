"""The audit log's table: append-only (a database trigger refuses UPDATE and DELETE).

Each entry is also a leaf of the server's Merkle log (:mod:`server.evidence.log`): ``record`` holds the leaf's bytes,
the entry as canonical JSON (:func:`server.audit.service.entry_record`), written with the row and never changed.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from server.core.append_only import append_only, append_only_statements
from server.core.base import Base, BigId, utc_now


class AuditEntry(Base):
    """Who did what, when: append-only (a database trigger refuses UPDATE and DELETE)."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utc_now, index=True)
    actor_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id"), comment="Null: the CLI or an anonymous caller."
    )
    actor: Mapped[str] = mapped_column(
        String(64),
        comment="The user's username then; cli:<OS user or --actor> for the CLI; '-' for an anonymous caller.",
    )
    action: Mapped[str] = mapped_column(String(32), index=True, comment="e.g. login, case.create, seal.bind.")
    target: Mapped[str] = mapped_column(String(128), default="")
    case_no: Mapped[str | None] = mapped_column(
        String(64), index=True, comment="The case the action concerns (its seals, alarms, notices...), if any."
    )
    details: Mapped[dict[str, Any]]
    record: Mapped[bytes] = mapped_column(
        LargeBinary, comment="The entry's leaf bytes in the Merkle log: canonical JSON with kind=audit, verbatim."
    )


#: The statements that make ``audit_log`` append-only, per dialect (run by the migration that created the table).
AUDIT_LOG_TRIGGERS: dict[str, list[str]] = {
    dialect: append_only_statements("audit_log", dialect) for dialect in ("sqlite", "postgresql")
}

append_only(AuditEntry.__table__)  # type: ignore[arg-type]
