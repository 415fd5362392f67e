"""Login throttling: limits on failed logins per (username, address) pair, per address, per IPv6 network and per
username.

- **Pair** (``login_max_failures`` in ``login_window_s``): guessing one user's password from one address. Only that
  pair is refused: the same user logs in from another address, another user from this one.
- **Address** (``login_address_max_failures`` in ``login_window_s``): one address trying many usernames. An IPv6
  address counts as its /64 (one host commonly holds the whole prefix), in the pair limit too.
- **Network** (``login_network_max_failures`` in ``login_window_s``), IPv6 only: one holder of many /64s — a home
  line's /56 (256 of them), an office's or a tunnel broker's /48 — trying from each in turn. All the failures from
  one /48 count together, whatever the /64s and the usernames
  (:data:`~server.auth.client_address.IPV6_NETWORK_PREFIX`). IPv4 addresses are not grouped.
- **User** (``login_user_max_failures`` in the short ``login_user_window_s``): a brake on a password guessed from many
  addresses at once. Its limit is above what one address (the pair limit) or one IPv6 /48 (the network limit) can
  reach within its window (the settings refuse it otherwise), so one attacker — one address, one home line, one /48
  — cannot lock a user out; a guess distributed over many networks is slowed to that rate.

Failures are rows (``login_failures``), so several server processes share the count. An attempt is counted *before*
its password is checked — :func:`begin_login_attempt` commits a failure row, then counts with it included — and the
row is taken back when the password was right (:func:`forget_login_attempt`). So parallel guesses each see the
others: of N simultaneous attempts at most the limit reach the password check, instead of all of them passing a check
made before any had failed. While a limit is exceeded the password is not even checked, and the answer is 429 with
the seconds until enough failures have left the window for one more attempt.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, and_, delete, func, select
from sqlalchemy.orm import Session

from server.auth.client_address import throttle_key, throttle_network
from server.auth.errors import TooManyAttempts
from server.auth.models import LoginFailure

#: The limits' names in the 429's detail (bilingual: "中文 / English").
IN_CHINESE = {
    "this username from this address": "此用户名自此地址",
    "this address": "此地址",
    "this network": "此网络",
    "this username": "此用户名",
}


@dataclass(frozen=True)
class ThrottleLimits:
    """The limits; see the module docstring (and :class:`server.config.AuthSettings`)."""

    pair_max: int
    address_max: int
    network_max: int
    window_s: int
    user_max: int
    user_window_s: int

    @property
    def longest_window_s(self) -> int:
        return max(self.window_s, self.user_window_s)


def begin_login_attempt(
    session: Session, *, username: str, client_ip: str, now: datetime, limits: ThrottleLimits
) -> int:
    """Record the attempt as a failure and commit it; raise :class:`TooManyAttempts` (the row taken back) if a limit
    is then exceeded, saying when to retry. Return the row's id."""
    session.execute(delete(LoginFailure).where(LoginFailure.at < now - timedelta(seconds=10 * limits.longest_window_s)))
    network = throttle_network(client_ip)
    attempt = LoginFailure(username=username[:64], client_ip=throttle_key(client_ip), client_network=network, at=now)
    session.add(attempt)
    session.commit()  # visible to every other attempt before any counts
    by_user, by_address = LoginFailure.username == attempt.username, LoginFailure.client_ip == attempt.client_ip
    checks: list[tuple[ColumnElement[bool], int, int, str]] = [
        (and_(by_user, by_address), limits.pair_max, limits.window_s, "this username from this address"),
        (by_address, limits.address_max, limits.window_s, "this address"),
        (by_user, limits.user_max, limits.user_window_s, "this username"),
    ]
    if network is not None:
        checks.append((LoginFailure.client_network == network, limits.network_max, limits.window_s, "this network"))
    refusals = [
        (retry, what)
        for where, maximum, window_s, what in checks
        if (retry := _retry_after(session, where, maximum=maximum, window_s=window_s, now=now)) is not None
    ]
    if refusals:
        forget_login_attempt(session, attempt_id=attempt.id)
        session.commit()
        retry, what = max(refusals)
        at = (now + timedelta(seconds=retry)).strftime("%Y-%m-%dT%H:%M:%SZ")
        raise TooManyAttempts(
            f"{IN_CHINESE[what]}登录失败次数过多，请在 {retry} 秒后（{at}）再试。 / "
            f"too many failed logins for {what}; retry in {retry} s (at {at})",
            retry_after_s=retry,
        )
    session.commit()  # end the read: the password check that follows must not hold a transaction open
    return attempt.id


def _retry_after(
    session: Session, where: ColumnElement[bool], *, maximum: int, window_s: int, now: datetime
) -> int | None:
    """``None`` if the failures matching ``where`` in the window (this attempt's included) are within ``maximum``;
    else the seconds until enough of them have left the window for this attempt to be within it."""
    since = now - timedelta(seconds=window_s)
    in_window = and_(where, LoginFailure.at > since)
    count = session.scalar(select(func.count(LoginFailure.id)).where(in_window)) or 0
    if count <= maximum:
        return None
    # Once the (count - maximum) oldest have left, this attempt would be the maximum-th: the last of them decides.
    leaving = session.scalar(
        select(LoginFailure.at)
        .where(in_window)
        .order_by(LoginFailure.at, LoginFailure.id)
        .offset(count - maximum - 1)
        .limit(1)
    )
    assert leaving is not None
    return max(1, math.ceil((leaving + timedelta(seconds=window_s) - now).total_seconds()))


def forget_login_attempt(session: Session, *, attempt_id: int) -> None:
    """The attempt was not a failure after all (right password, or throttled); the caller commits."""
    session.execute(delete(LoginFailure).where(LoginFailure.id == attempt_id))
