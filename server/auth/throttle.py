"""Login throttling: at most N failures per username and per client address within a sliding window.

Failures are rows (``login_failures``), so several server processes share the count. An attempt is counted *before*
its password is checked — :func:`begin_login_attempt` commits a failure row, then counts with it included — and the
row is taken back when the password was right (:func:`forget_login_attempt`). So parallel guesses each see the
others: of N simultaneous attempts at most ``max_failures`` reach the password check, instead of all of them passing
a check made before any had failed. While a key is over the limit the password is not even checked, and the answer
is 429 with the seconds until the oldest failure leaves the window.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from server.auth.errors import TooManyAttempts
from server.auth.models import LoginFailure


def begin_login_attempt(
    session: Session, *, username: str, client_ip: str, now: datetime, max_failures: int, window_s: int
) -> int:
    """Record the attempt as a failure and commit it; raise :class:`TooManyAttempts` (the row taken back) if the
    username or the address has then more than ``max_failures`` in the window. Return the row's id."""
    session.execute(delete(LoginFailure).where(LoginFailure.at < now - timedelta(seconds=10 * window_s)))
    attempt = LoginFailure(username=username[:64], client_ip=client_ip[:64], at=now)
    session.add(attempt)
    session.commit()  # visible to every other attempt before any counts
    since = now - timedelta(seconds=window_s)
    for column, value, what in (
        (LoginFailure.username, attempt.username, "this username"),
        (LoginFailure.client_ip, attempt.client_ip, "this address"),
    ):
        count, oldest = session.execute(
            select(func.count(LoginFailure.id), func.min(LoginFailure.at)).where(
                column == value, LoginFailure.at > since
            )
        ).one()
        if count > max_failures:
            forget_login_attempt(session, attempt_id=attempt.id)
            session.commit()
            retry = max(1, math.ceil((oldest + timedelta(seconds=window_s) - now).total_seconds()))
            raise TooManyAttempts(f"too many failed logins for {what}; retry later", retry_after_s=retry)
    session.commit()  # end the read: the password check that follows must not hold a transaction open
    return attempt.id


def forget_login_attempt(session: Session, *, attempt_id: int) -> None:
    """The attempt was not a failure after all (right password, or throttled); the caller commits."""
    session.execute(delete(LoginFailure).where(LoginFailure.id == attempt_id))
