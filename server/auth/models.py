"""Tables of people and their actions: users, case assignments, login sessions, login failures, the audit log, and
the history of which case each seal was bound to (so that late events can be attributed).

Imported at the bottom of :mod:`server.models` so that ``Base.metadata`` knows them.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from server.core.base import Base, BigId, utc_now


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
    """A failed login, counted per username, per client address and per IPv6 network to throttle password guessing
    (:mod:`server.auth.throttle`)."""

    __tablename__ = "login_failures"
    __table_args__ = (
        Index(None, "username", "at"),
        Index(None, "client_ip", "at"),
        Index(None, "client_network", "at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    username: Mapped[str] = mapped_column(String(64))
    client_ip: Mapped[str] = mapped_column(String(64))  # an IPv4 address, or an IPv6 address's /64
    client_network: Mapped[str | None] = mapped_column(
        String(64), comment="An IPv6 address's /48; null for IPv4 (and for failures recorded before 0023)."
    )
    at: Mapped[datetime] = mapped_column(default=utc_now)


class CaseAccessCode(Base):
    """The debtor's access code of a case (printed for the debtor): signing in with the case number and the code
    starts a session of ``user_id``, a debtor account of that case only. One live code per case; a clerk rotates it
    (the old code and its sessions end). Stored as an argon2id hash, like passwords."""

    __tablename__ = "case_access_codes"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    case_no: Mapped[str] = mapped_column(ForeignKey("cases.case_no"), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), comment="The debtor account the code signs in.")
    code_hash: Mapped[str] = mapped_column(String(256), comment="argon2id of the code; never the code itself.")
    issued_at: Mapped[datetime] = mapped_column(default=utc_now)
    issued_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"), comment="Null when done on the CLI.")
