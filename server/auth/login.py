"""Signing in, out and changing one's password: one function per action, each writing its audit entry, called by the
API's routes (:mod:`server.api.auth`, :mod:`server.api.users`) and by the pages (:mod:`server.web.auth_pages`) alike.

Failed sign-ins are throttled (:mod:`server.auth.throttle`); the password or code is checked, and a password hash with
old argon2 parameters made anew, with no transaction held (on SQLite: no write lock while argon2 works). So is a
changed password's: the current one is checked and the new one hashed before the user's row is locked.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import NoReturn

from sqlalchemy.orm import Session

from server.audit.service import record_audit
from server.auth.access_codes import code_matches, find_code
from server.auth.errors import Forbidden, NotAuthenticated, TooManyAttempts, UnknownClient
from server.auth.models import AuthSession, CaseAccessCode, User
from server.auth.passwords import hash_password, rehashed, verify_password
from server.auth.sessions import IssuedSession, issue_session, revoke_session, revoke_user_sessions
from server.auth.throttle import ThrottleLimits, begin_login_attempt, forget_login_attempt
from server.auth.users import find_user
from server.config import AuthSettings
from server.core.base import utc_now
from server.core.db import NO_KEY_UPDATE
from server.errors import Conflict
from server.seals.case_numbers import canonical_case_no
from server.seals.cases import find_case
from server.seals.models import CaseStatus

logger = logging.getLogger(__name__)

WRONG_CREDENTIALS = "用户名或密码错误。 / wrong username or password"
WRONG_CODE = "案号或查询码不正确。 / wrong case number or access code"
CODE_OF_ENDED_CASE = (
    "本案已解除查封或已结案，查询码不能再用于登录。 / "
    "the seizure of this case is lifted or the case closed: its access code no longer signs in"
)
CLIENT_UNKNOWN = (
    "无法确定您的网络地址（法院的反向代理未按要求配置），登录被拒绝，请告知法院的系统管理员。 / "
    "Your address cannot be known (the court's reverse proxy is not configured as it must be): sign-in refused; "
    "tell the court's administrator."
)
#: A case whose access code no longer signs in (nor is issued).
CODE_ENDED = frozenset({CaseStatus.LIFTED.value, CaseStatus.CLOSED.value})
WRONG_CURRENT_PASSWORD = "当前密码不正确。 / The current password is wrong."
KEPT_CHANGING = "密码在此期间多次更改，请重试。 / The password kept changing meanwhile: try again."
#: Why a sign-in or a password change that checked a password hash replaced since may not go on (so far).
PASSWORD_CHANGED = "password changed meanwhile"
#: How many times a sign-in (:func:`_look_again`) or a password change checks against a hash stored meanwhile.
LOOKS_AGAIN = 3
#: Why a sign-in or a password change may not go on: the account was disabled meanwhile.
DISABLED = "disabled"
CHANGED_MEANWHILE = (
    "你的密码已被更改，或账号已被停用：此次登录已结束，请重新登录。 / "
    "Your password was changed, or your account disabled, meanwhile: this login has ended; log in again."
)
LOGIN_ENDED = (
    "此次登录已结束（已在别处退出，或已过期），请重新登录。 / "
    "This login has ended meanwhile (signed out, or expired): log in again."
)


#: Counts a failed sign-in by its kind (``unknown_user``, ``wrong_secret``, ``unknown_case``, ``refused``,
#: ``unknown_client``): :meth:`~server.core.metrics.IngestMetrics.count_failed_sign_in`.
FailureCount = Callable[[str], None]
#: The longest piece of a submitted username or case number a log line shows (``%r``: controls escaped).
SHOWN = 64


def _uncounted(_kind: str) -> None:
    """A :data:`FailureCount` that counts nothing (the CLI, tests)."""


@dataclass(frozen=True)
class SignedIn:
    user: User
    issued: IssuedSession


def throttle_limits(settings: AuthSettings) -> ThrottleLimits:
    return ThrottleLimits(
        pair_max=settings.login_max_failures,
        address_max=settings.login_address_max_failures,
        network_max=settings.login_network_max_failures,
        window_s=settings.login_window_s,
        user_max=settings.login_user_max_failures,
        user_window_s=settings.login_user_window_s,
    )


def _known_client(ip: str | None, name: str, *, what: str, count: FailureCount) -> str:
    """``ip``; raise :class:`UnknownClient` if it is ``None``: a client whose address is unknown
    (:mod:`server.auth.client_address`) has no throttle of its own, and must not share one with every other client
    of the same proxy (one stranger's guesses would lock the whole court out)."""
    if ip is None:
        count("unknown_client")
        logger.info("%s refused: the client's address is unknown (%r)", what, name[:SHOWN])
        raise UnknownClient(CLIENT_UNKNOWN)
    return ip


def _attempt(session: Session, username: str, ip: str, settings: AuthSettings, *, what: str) -> int:
    """An attempt at ``username``'s secret from ``ip``, counted before the secret is checked
    (:func:`~server.auth.throttle.begin_login_attempt`: its id, to forget it if the secret is right); raise
    :class:`TooManyAttempts`, logged, past a limit."""
    try:
        return begin_login_attempt(
            session, username=username, client_ip=ip, now=utc_now(), limits=throttle_limits(settings)
        )
    except TooManyAttempts:
        logger.warning("%s throttled: %r from %s", what, username[:SHOWN], ip)
        raise


def sign_in(
    session: Session,
    *,
    username: str,
    password: str,
    ip: str | None,
    settings: AuthSettings,
    count: FailureCount = _uncounted,
) -> SignedIn:
    """Check the password and start a session; raise :class:`TooManyAttempts`, :class:`UnknownClient` or
    :class:`NotAuthenticated`.

    A failed sign-in of an account is audited under the account's name; one with a username that names no account
    is not (the evidence log is permanent, and the name is whatever the caller typed): a log line (the name cut and
    escaped) and the metric ``seal_sign_ins_failed_total{kind="unknown_user"}``."""
    ip = _known_client(ip, username, what="login", count=count)
    attempt_id = _attempt(session, username, ip, settings, what="login")
    user = find_user(session, username=username)
    checked_hash = user.password_hash if user is not None else None
    session.commit()  # no transaction (on SQLite: no write lock) held while the password is checked
    password_ok = verify_password(checked_hash, password)
    # A hash with old argon2 parameters is made anew here, with no transaction held either.
    new_hash = rehashed(checked_hash, password) if password_ok and checked_hash is not None else None
    reason = "unknown user" if user is None else "wrong password" if not password_ok else None
    if user is not None and reason is None:
        # The session is issued in a transaction that looks again: a password changed, or the account disabled,
        # while the password was being checked stops this sign-in as it ended the others.
        reason, new_hash = _look_again(session, user, password, checked_hash, new_hash)
    if user is None:
        count("unknown_user")
        logger.warning("failed login: no account %r from %s", username[:SHOWN], ip)
        raise NotAuthenticated(WRONG_CREDENTIALS)
    if reason is not None:
        count("wrong_secret" if reason == "wrong password" else "refused")
        name = user.username  # the account's own name, not the text submitted
        record_audit(session, actor=None, action="login.failed", target=name, details={"ip": ip, "reason": reason})
        session.commit()
        logger.warning("failed login: account %r from %s (%s)", name, ip, reason)
        raise NotAuthenticated(WRONG_CREDENTIALS)
    forget_login_attempt(session, attempt_id=attempt_id)
    if new_hash is not None:  # the stored hash is still the one verified (_changed_meanwhile, under the row's lock)
        user.password_hash = new_hash
    return _start(session, user, settings, ip=ip, details={"ip": ip})


def _look_again(
    session: Session, user: User, password: str, checked_hash: str | None, new_hash: str | None
) -> tuple[str | None, str | None]:
    """Why ``user`` may not sign in after all (:func:`_changed_meanwhile`), or ``None``, with the hash to store (a
    rehash of the one stored, or ``None``); the user's row is then locked until the session is issued.

    A hash stored meanwhile is not always a new password: another sign-in of the user at the same moment made the
    same password's hash anew (old argon2 parameters). So the password is checked again, against the hash stored
    now, with no transaction held (the row's lock, on SQLite the write lock, is let go while argon2 works): a
    password changed by its owner or reset by a clerk does not match it and still stops this sign-in; a disabled
    account stops it whatever the hash. A few times at most, should the hash keep changing."""
    for _ in range(LOOKS_AGAIN):
        reason = _changed_meanwhile(session, user, checked_hash)
        if reason != PASSWORD_CHANGED:
            return reason, new_hash
        checked_hash, username = user.password_hash, user.username
        session.commit()  # no lock held while the password is checked again (and ``user`` is not read meanwhile)
        if not verify_password(checked_hash, password):
            return reason, None
        logger.info("login of %s: the password hash was made anew meanwhile, and the password matches it", username)
        new_hash = rehashed(checked_hash, password)
    return _changed_meanwhile(session, user, checked_hash), new_hash


def _changed_meanwhile(session: Session, user: User, checked_hash: str | None = None) -> str | None:
    """Why ``user`` may not sign in after all, read again and locked (until the session is issued) — disabled, or
    their password changed since ``checked_hash`` was checked — or ``None``.

    ``FOR NO KEY UPDATE`` (:data:`~server.core.db.NO_KEY_UPDATE`): it waits for, and holds off, every change of the
    user's row (disabling, a new role or password, another sign-in), and nothing else. ``FOR UPDATE`` would also
    hold off every row inserted meanwhile that names the user — an audit entry of theirs, a binding, a command, an
    inbox message to them — whose transaction holds a case's or a seal's row that others (the ingest) then wait
    for."""
    session.refresh(user, with_for_update=NO_KEY_UPDATE)
    if user.disabled:
        return DISABLED
    if checked_hash is not None and user.password_hash != checked_hash:
        return PASSWORD_CHANGED
    return None


def sign_in_with_code(
    session: Session,
    *,
    case_no: str,
    code: str,
    ip: str | None,
    settings: AuthSettings,
    count: FailureCount = _uncounted,
) -> SignedIn:
    """Sign in as the debtor of a case with its access code: a session for that case only. Throttled like
    :func:`sign_in` (the case number counts as the username). A failure is audited for a case that exists (under
    its own number); a case number that names no case is logged and counted only, as an unknown username is."""
    case = find_case(session, case_no=case_no)
    who = f"case:{case.case_no if case is not None else canonical_case_no(case_no)}"  # one count, however spelt
    ip = _known_client(ip, case_no, what="access code sign-in", count=count)
    attempt_id = _attempt(session, who, ip, settings, what="access code sign-in")
    row = find_code(session, case_no=case_no)
    user = session.get(User, row.user_id) if row is not None else None
    checked_hash = row.code_hash if row is not None else None
    session.commit()  # no transaction held while the code is checked
    known = case.case_no if case is not None else None  # the case's audit entries get the sign-ins to it
    if not code_matches(row, code) or row is None or user is None:
        _refuse_code(session, case_no=case_no, known=known, ip=ip, reason="wrong code", count=count)
    assert row is not None and user is not None
    # Looked at again, locked, in the transaction that issues the session: a rotation committed while the code was
    # checked stops this sign-in too; one that commits after it ends the session it issued.
    reason = _code_changed_meanwhile(session, row, checked_hash) or _changed_meanwhile(session, user)
    if reason is None and case is not None:
        session.refresh(case)
        reason = f"case {case.status}" if case.status in CODE_ENDED else None
    if reason is not None:
        _refuse_code(session, case_no=case_no, known=known, ip=ip, reason=reason, count=count)
    forget_login_attempt(session, attempt_id=attempt_id)
    return _start(session, user, settings, ip=ip, details={"ip": ip, "case_no": case_no}, case_no=known)


def _refuse_code(
    session: Session, *, case_no: str, known: str | None, ip: str, reason: str, count: FailureCount
) -> NoReturn:
    """Refuse an access-code sign-in: audited under the case's own number (``known``) if the case exists; a case
    number that names none is the caller's text, logged (cut, escaped) and counted but kept out of the evidence log."""
    if known is None:
        count("unknown_case")
    else:
        count("wrong_secret" if reason == "wrong code" else "refused")
        details = {"ip": ip, "via": "code", "reason": reason}
        record_audit(session, actor=None, action="login.failed", target=f"case:{known}", case_no=known, details=details)
        session.commit()
    logger.warning("failed access code sign-in: case %r from %s (%s)", case_no[:SHOWN], ip, reason)
    raise NotAuthenticated(CODE_OF_ENDED_CASE if reason.startswith("case ") else WRONG_CODE)


def _code_changed_meanwhile(session: Session, row: CaseAccessCode, checked_hash: str | None) -> str | None:
    session.refresh(row, with_for_update=NO_KEY_UPDATE)
    return "code rotated meanwhile" if row.code_hash != checked_hash else None


def _start(
    session: Session,
    user: User,
    settings: AuthSettings,
    *,
    ip: str,
    details: dict[str, str],
    case_no: str | None = None,
) -> SignedIn:
    issued = issue_session(session, user=user, now=utc_now(), ttl_s=settings.session_ttl_s, client_ip=ip)
    record_audit(session, actor=user, action="login", target=user.username, case_no=case_no, details=details)
    session.commit()
    logger.info("login: %s (%s) from %s", user.username, user.role, ip)
    return SignedIn(user, issued)


def sign_out(session: Session, *, user: User, session_id: int) -> None:
    """End this login (its cookie and its bearer token alike)."""
    revoke_session(session, session_id=session_id, now=utc_now())
    record_audit(session, actor=user, action="logout", target=user.username)
    session.commit()


def change_password(
    session: Session,
    *,
    user: User,
    session_id: int,
    current: str,
    new: str,
    ip: str | None,
    settings: AuthSettings,
) -> None:
    """Change ``user``'s own password; their other logins end. Raise :class:`TooManyAttempts` if wrong current
    passwords are throttled (they count as failed sign-ins of the user from ``ip``: a stolen login must not guess
    the password faster than a sign-in may), :class:`Forbidden` if ``current`` is wrong (audited), and
    :class:`NotAuthenticated` if the user was disabled while they were being checked, or this login (``session_id``)
    ended meanwhile: signed out in another tab, ended by a clerk (a reset of the password, a change of role), expired.
    The caller has checked the new password's length (the API's and the page's models do).

    As at sign-in, argon2 works with no transaction held (on SQLite the request's transaction holds the write lock
    from its first statement): the current password is checked and the new one hashed first, then the transaction
    that locks the user's row looks again (:func:`_changed_meanwhile`, :func:`_login_ended`) and only stores the new
    hash. A hash stored meanwhile while this login lives on was not a clerk's (a reset ends the user's logins): a
    sign-in made the same password's hash anew (old argon2 parameters), or another request of this login changed the
    password (the form sent twice). The current password is then checked again against the hash stored now: it
    matches the first; for the second the new one does (that change is made: done), else it is ``Forbidden``. Should
    the hash keep changing, :class:`~server.errors.Conflict` (try again)."""
    checked_hash, username = user.password_hash, user.username
    ip = _known_client(ip, username, what="password change", count=_uncounted)
    attempt_id = _attempt(session, username, ip, settings, what="password change")
    new_hash: str | None = None
    for look in range(LOOKS_AGAIN):
        session.commit()  # no transaction held while argon2 works (``user`` is not read meanwhile)
        if not verify_password(checked_hash, current):
            if look > 0 and verify_password(checked_hash, new):  # this login's same change, sent twice: done
                forget_login_attempt(session, attempt_id=attempt_id)
                session.commit()
                logger.info("password change of %s: already made by another request of this login", username)
                return
            record_audit(session, actor=user, action="user.password.failed", target=username, details={"ip": ip})
            session.commit()
            raise Forbidden(WRONG_CURRENT_PASSWORD)
        new_hash = new_hash or hash_password(new)
        reason = _changed_meanwhile(session, user, checked_hash)
        ended = None if reason == DISABLED else _login_ended(session, session_id)
        if reason == DISABLED or ended is not None:
            session.rollback()
            forget_login_attempt(session, attempt_id=attempt_id)  # the password was right
            session.commit()
            logger.warning("password change of %s refused: %s", username, reason or ended)
            raise NotAuthenticated(LOGIN_ENDED if reason is None else CHANGED_MEANWHILE)
        if reason is None:
            user.password_hash = new_hash
            forget_login_attempt(session, attempt_id=attempt_id)
            revoke_user_sessions(session, user_id=user.id, now=utc_now(), keep=session_id)
            record_audit(session, actor=user, action="user.password", target=user.username)
            session.commit()
            return
        logger.info("password change of %s: the hash was stored anew meanwhile; checking again", username)
        checked_hash = user.password_hash
    session.rollback()
    forget_login_attempt(session, attempt_id=attempt_id)
    session.commit()
    logger.warning("password change of %s refused: its hash kept changing", username)
    raise Conflict(KEPT_CHANGING)


def _login_ended(session: Session, session_id: int) -> str | None:
    """Why the login ``session_id`` no longer acts, read again and locked after the user's row (as
    :func:`_changed_meanwhile` locks it) until the change commits — signed out, ended (a clerk's change of the
    user's role), expired since the request found it live — or ``None``. A sign-out that comes later waits for the
    change, and then ends this login as it would have."""
    login = session.get(AuthSession, session_id, with_for_update=NO_KEY_UPDATE, populate_existing=True)
    if login is None or login.revoked_at is not None:
        return "this login ended meanwhile"
    if login.expires_at <= utc_now():
        return "this login expired meanwhile"
    return None
