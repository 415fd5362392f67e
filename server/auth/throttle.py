"""Login throttling: at most N failures per username and per client address within a sliding window.

Failures are rows (``login_failures``), so several server processes share the count. While a key is over the limit
the password is not even checked, and the answer is 429 with the seconds until the oldest failure leaves the window.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from server.auth.errors import TooManyAttempts
from server.auth.models import LoginFailure


def check_login_allowed(
    session: Session, *, username: str, client_ip: str, now: datetime, max_failures: int, window_s: int
) -> None:
    """Raise :class:`TooManyAttempts` if the username or the address has used up its failures."""
    since = now - timedelta(seconds=window_s)
    for column, value, what in (
        (LoginFailure.username, username, "this username"),
        (LoginFailure.client_ip, client_ip, "this address"),
    ):
        count, oldest = session.execute(
            select(func.count(LoginFailure.id), func.min(LoginFailure.at)).where(
                column == value, LoginFailure.at > since
            )
        ).one()
        if count >= max_failures:
            retry = max(1, math.ceil((oldest + timedelta(seconds=window_s) - now).total_seconds()))
            raise TooManyAttempts(f"too many failed logins for {what}; retry later", retry_after_s=retry)


def record_login_failure(session: Session, *, username: str, client_ip: str, now: datetime, window_s: int) -> None:
    """Count a failure (the caller commits); failures long out of the window are purged on the way."""
    session.execute(delete(LoginFailure).where(LoginFailure.at < now - timedelta(seconds=10 * window_s)))
    session.add(LoginFailure(username=username[:64], client_ip=client_ip[:64], at=now))
