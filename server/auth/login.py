"""Signing in, out and changing one's password: one function per action, each writing its audit entry, called by the
API's routes (:mod:`server.api.auth`, :mod:`server.api.users`) and by the pages (:mod:`server.web.auth_pages`) alike.

Failed sign-ins are throttled (:mod:`server.auth.throttle`); the password or code is checked with no transaction
held (on SQLite: no write lock while argon2 works).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy.orm import Session

from server.audit.service import record_audit
from server.auth.access_codes import code_matches, find_code
from server.auth.errors import Forbidden, NotAuthenticated, TooManyAttempts
from server.auth.models import User
from server.auth.passwords import hash_password, needs_rehash, verify_password
from server.auth.sessions import IssuedSession, issue_session, revoke_session, revoke_user_sessions
from server.auth.throttle import ThrottleLimits, begin_login_attempt, forget_login_attempt
from server.auth.users import find_user
from server.config import AuthSettings
from server.core.base import utc_now

logger = logging.getLogger(__name__)

WRONG_CREDENTIALS = "wrong username or password"
WRONG_CODE = "wrong case number or access code"
WRONG_CURRENT_PASSWORD = "the current password is wrong"


@dataclass(frozen=True)
class SignedIn:
    user: User
    issued: IssuedSession


def throttle_limits(settings: AuthSettings) -> ThrottleLimits:
    return ThrottleLimits(
        pair_max=settings.login_max_failures,
        address_max=settings.login_address_max_failures,
        window_s=settings.login_window_s,
        user_max=settings.login_user_max_failures,
        user_window_s=settings.login_user_window_s,
    )


def sign_in(session: Session, *, username: str, password: str, ip: str, settings: AuthSettings) -> SignedIn:
    """Check the password and start a session; raise :class:`TooManyAttempts` or :class:`NotAuthenticated`."""
    try:
        attempt_id = begin_login_attempt(
            session, username=username, client_ip=ip, now=utc_now(), limits=throttle_limits(settings)
        )
    except TooManyAttempts:
        logger.warning("login throttled: username %r from %s", username, ip)
        raise
    user = find_user(session, username=username)
    session.commit()  # no transaction (on SQLite: no write lock) held while the password is checked
    password_ok = verify_password(user.password_hash if user is not None else None, password)
    if user is None or not password_ok or user.disabled:
        reason = "unknown user" if user is None else "wrong password" if not password_ok else "disabled"
        record_audit(session, actor=None, action="login.failed", target=username, details={"ip": ip, "reason": reason})
        session.commit()
        logger.warning("failed login: username %r from %s (%s)", username, ip, reason)
        raise NotAuthenticated(WRONG_CREDENTIALS)
    forget_login_attempt(session, attempt_id=attempt_id)
    if needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
    return _start(session, user, settings, ip=ip, details={"ip": ip})


def sign_in_with_code(session: Session, *, case_no: str, code: str, ip: str, settings: AuthSettings) -> SignedIn:
    """Sign in as the debtor of a case with its access code: a session for that case only. Throttled like
    :func:`sign_in` (the case number counts as the username)."""
    who = f"case:{case_no}"
    try:
        attempt_id = begin_login_attempt(
            session, username=who, client_ip=ip, now=utc_now(), limits=throttle_limits(settings)
        )
    except TooManyAttempts:
        logger.warning("access code sign-in throttled: case %r from %s", case_no, ip)
        raise
    row = find_code(session, case_no=case_no)
    user = session.get(User, row.user_id) if row is not None else None
    session.commit()  # no transaction held while the code is checked
    if not code_matches(row, code) or user is None or user.disabled:
        record_audit(session, actor=None, action="login.failed", target=who[:128], details={"ip": ip, "via": "code"})
        session.commit()
        logger.warning("failed access code sign-in: case %r from %s", case_no, ip)
        raise NotAuthenticated(WRONG_CODE)
    forget_login_attempt(session, attempt_id=attempt_id)
    return _start(session, user, settings, ip=ip, details={"ip": ip, "case_no": case_no})


def _start(session: Session, user: User, settings: AuthSettings, *, ip: str, details: dict[str, str]) -> SignedIn:
    issued = issue_session(session, user=user, now=utc_now(), ttl_s=settings.session_ttl_s, client_ip=ip)
    record_audit(session, actor=user, action="login", target=user.username, details=details)
    session.commit()
    logger.info("login: %s (%s) from %s", user.username, user.role, ip)
    return SignedIn(user, issued)


def sign_out(session: Session, *, user: User, session_id: int) -> None:
    """End this login (its cookie and its bearer token alike)."""
    revoke_session(session, session_id=session_id, now=utc_now())
    record_audit(session, actor=user, action="logout", target=user.username)
    session.commit()


def change_password(session: Session, *, user: User, session_id: int, current: str, new: str) -> None:
    """Change ``user``'s own password; their other logins end. Raise :class:`Forbidden` if ``current`` is wrong.
    The caller has checked the new password's length (the API's and the page's models do)."""
    if not verify_password(user.password_hash, current):
        raise Forbidden(WRONG_CURRENT_PASSWORD)
    user.password_hash = hash_password(new)
    revoke_user_sessions(session, user_id=user.id, now=utc_now(), keep=session_id)
    record_audit(session, actor=user, action="user.password", target=user.username)
    session.commit()
