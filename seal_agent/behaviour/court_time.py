"""The present as the court's signed word bounds it, for a seal whose clock is not synchronised: such a seal judges a
command's validity window by its wall clock, but never by a time before the latest ``issued_at`` of a command the
court signed that it has accepted.

A Pi has no real-time clock: booted before NTP answered, its wall clock stands at the time it saved (fake-hwclock),
possibly days behind. A command the court signed at ``issued_at`` proves that the present is at least that instant;
the monotonic clock carries that floor forward from when it was seen. So the seal's "now" for commands is
``max(wall clock, floor + monotonic time since the floor was seen)`` (:meth:`CourtTime.now`). The floor is kept in
memory and, with each command's answer, in the outbox (:data:`COURT_TIME_SETTING`): after a restart it holds again,
without the time that passed (a lower bound still).

The floor is only a stopgap for an unset clock, and a court clock that was wrong once must not outlive it. One command
raises it no further than its own ``expires_at`` (:meth:`CourtTime.saw`). The seal's desk
(:mod:`seal_agent.behaviour.commands`) raises it only while the kernel does not say the wall clock is synchronised,
and drops it (:meth:`CourtTime.drop`, and from the outbox) as soon as it does: a synchronised clock is trusted alone.
"""

from __future__ import annotations

import threading
from datetime import datetime, timedelta

from seal_agent.interfaces import Clock
from seal_protocol.envelope import parse_ts, utc_now_ms

#: The outbox setting with the latest court-signed ``issued_at`` the seal accepted a command of (UTC, ms).
COURT_TIME_SETTING = "court_time_seen"


class CourtTime:
    """``clock``'s wall time, never below the court's latest signed time seen (``seen``: as persisted, or None)."""

    def __init__(self, clock: Clock, seen: str | None = None) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._seen: tuple[datetime, float] | None = None  # (court time, monotonic reading when it was seen)
        if seen:
            try:
                self._seen = (parse_ts(seen), clock.monotonic())
            except ValueError:  # a setting from elsewhere: no floor rather than a wrong one
                self._seen = None

    def floor(self) -> datetime | None:
        """The court's latest signed time seen, carried forward by the monotonic clock; None if none seen."""
        with self._lock:
            seen = self._seen
        if seen is None:
            return None
        court, at = seen
        return court + timedelta(seconds=max(0.0, self._clock.monotonic() - at))

    def now(self) -> datetime:
        wall = self._clock.now()
        floor = self.floor()
        return wall if floor is None or floor <= wall else floor

    def saw(self, issued_at: str, expires_at: str) -> None:
        """The court signed a command valid from ``issued_at`` to ``expires_at`` that the seal accepted: the present
        is at least ``issued_at`` — never taken as later than ``expires_at``, so that one command signed with a wrong
        time cannot push the floor beyond its own lifetime."""
        issued = min(parse_ts(issued_at), parse_ts(expires_at))
        floor = self.floor()
        if floor is None or issued > floor:
            with self._lock:
                self._seen = (issued, self._clock.monotonic())

    def drop(self) -> None:
        """Forget the floor: the seal's own clock is synchronised, and alone judges from now on."""
        with self._lock:
            self._seen = None

    def setting(self) -> str | None:
        """The floor to persist (its current value: a lower bound of the present at any later time)."""
        floor = self.floor()
        return None if floor is None else utc_now_ms(floor)
