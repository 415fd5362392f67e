"""The audit log's table: append-only (a database trigger refuses UPDATE and DELETE)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import DDL, ForeignKey, String, event
from sqlalchemy.orm import Mapped, mapped_column

from server.core.base import Base, BigId, utc_now


class AuditEntry(Base):
    """Who did what, when: append-only (a database trigger refuses UPDATE and DELETE)."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utc_now, index=True)
    actor_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id"), comment="Null: the CLI or an anonymous caller."
    )
    actor: Mapped[str] = mapped_column(String(64), comment="The actor's username then, or '-'.")
    action: Mapped[str] = mapped_column(String(32), index=True, comment="e.g. login, case.create, seal.bind.")
    target: Mapped[str] = mapped_column(String(128), default="")
    details: Mapped[dict[str, Any]]


_APPEND_ONLY_MESSAGE = "audit_log is append-only"


#: The statements that make ``audit_log`` append-only, per dialect; run after the table is created (by
#: ``create_all`` through the listener below, and by the migration that creates the table).
AUDIT_LOG_TRIGGERS: dict[str, list[str]] = {
    "sqlite": [
        f"CREATE TRIGGER audit_log_no_{op.lower()} BEFORE {op} ON audit_log "
        f"BEGIN SELECT RAISE(ABORT, '{_APPEND_ONLY_MESSAGE}'); END"
        for op in ("UPDATE", "DELETE")
    ],
    "postgresql": [
        "CREATE FUNCTION audit_log_refuse() RETURNS trigger LANGUAGE plpgsql AS "
        f"$$ BEGIN RAISE EXCEPTION '{_APPEND_ONLY_MESSAGE}'; END $$",
        "CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log "
        "FOR EACH ROW EXECUTE FUNCTION audit_log_refuse()",
    ],
}


for _dialect, _statements in AUDIT_LOG_TRIGGERS.items():
    for _statement in _statements:
        event.listen(AuditEntry.__table__, "after_create", DDL(_statement).execute_if(dialect=_dialect))
