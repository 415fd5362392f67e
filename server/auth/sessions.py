"""Login sessions: a random cookie secret and a random bearer token per login, stored only as SHA-256 hashes.

Two secrets so that the HttpOnly cookie is never the same string a script has seen. Logging out with either ends
both. Secrets are 256-bit random, so a fast hash is enough: nobody can guess their way to a preimage.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from server.auth.models import AuthSession, User


@dataclass(frozen=True)
class IssuedSession:
    session_id: int
    cookie: str
    token: str
    expires_at: datetime


def secret_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def issue_session(session: Session, *, user: User, now: datetime, ttl_s: int, client_ip: str = "") -> IssuedSession:
    """Start a login for ``user``; the caller commits. Expired sessions of the user are purged on the way."""
    session.execute(delete(AuthSession).where(AuthSession.user_id == user.id, AuthSession.expires_at < now))
    cookie, token = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    row = AuthSession(
        user_id=user.id,
        cookie_hash=secret_hash(cookie),
        token_hash=secret_hash(token),
        created_at=now,
        expires_at=now + timedelta(seconds=ttl_s),
        client_ip=client_ip[:64],
    )
    session.add(row)
    session.flush()
    return IssuedSession(row.id, cookie, token, row.expires_at)


def resolve_session(
    session: Session, *, secret: str, via_cookie: bool, now: datetime
) -> tuple[AuthSession, User] | None:
    """The live session and its (enabled) user for a cookie secret or bearer token, else ``None``."""
    column = AuthSession.cookie_hash if via_cookie else AuthSession.token_hash
    row = session.scalar(select(AuthSession).where(column == secret_hash(secret)))
    if row is None or row.revoked_at is not None or row.expires_at <= now:
        return None
    user = session.get(User, row.user_id)
    if user is None or user.disabled:
        return None
    return row, user


def revoke_session(session: Session, *, session_id: int, now: datetime) -> None:
    session.execute(update(AuthSession).where(AuthSession.id == session_id).values(revoked_at=now))


def revoke_user_sessions(session: Session, *, user_id: int, now: datetime, keep: int | None = None) -> None:
    """End every live login of a user (disabled, role changed, password changed), except ``keep``."""
    query = update(AuthSession).where(AuthSession.user_id == user_id, AuthSession.revoked_at.is_(None))
    if keep is not None:
        query = query.where(AuthSession.id != keep)
    session.execute(query.values(revoked_at=now))
