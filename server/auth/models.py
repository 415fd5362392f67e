"""Tables of people and their actions: users, case assignments, login sessions, login failures, the audit log, and
the history of which case each seal was bound to (so that late events can be attributed).

Imported at the bottom of :mod:`server.models` so that ``Base.metadata`` knows them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import DDL, Boolean, ForeignKey, Index, String, UniqueConstraint, event
from sqlalchemy.orm import Mapped, mapped_column

from server.models import Base, BigId, utc_now


class User(Base):
    """A person who logs in. Users are disabled, never deleted: the audit log refers to them."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    full_name: Mapped[str] = mapped_column(String(128), default="")
    role: Mapped[str] = mapped_column(String(16), comment="clerk, judge, officer, creditor or debtor.")
    password_hash: Mapped[str] = mapped_column(String(256), comment="argon2id; never the password itself.")
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utc_now)


class CaseAssignment(Base):
    """A judge or officer assigned to a case, or a creditor or debtor who is a party to it."""

    __tablename__ = "case_assignments"
    __table_args__ = (UniqueConstraint("case_no", "user_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    case_no: Mapped[str] = mapped_column(ForeignKey("cases.case_no"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    assigned_at: Mapped[datetime] = mapped_column(default=utc_now)
    assigned_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"), comment="Null when done on the CLI.")


class AuthSession(Base):
    """One login: a browser cookie and an API bearer token, stored as SHA-256 hashes of the random secrets."""

    __tablename__ = "auth_sessions"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    cookie_hash: Mapped[str] = mapped_column(String(64), unique=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utc_now)
    expires_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]
    client_ip: Mapped[str] = mapped_column(String(64), default="")


class LoginFailure(Base):
    """A failed login, counted per username and per client address to throttle password guessing."""

    __tablename__ = "login_failures"
    __table_args__ = (Index(None, "username", "at"), Index(None, "client_ip", "at"))

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    username: Mapped[str] = mapped_column(String(64))
    client_ip: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(default=utc_now)


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
