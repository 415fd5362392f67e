"""When a courier sends an item again: the bookkeeping of its sendings and the court's receipts, with no thread and no
I/O (the :class:`~seal_agent.journal.courier.Courier`'s worker thread owns one :class:`ResendSchedule`).

Re-sending is harmless: the court treats identical bytes as a no-op duplicate and receipts them again.

* After every (re)connect the courier starts again from the oldest item not receipted and sends everything in key
  order, except what the MQTT client itself still holds unacknowledged (it re-sends that at CONNACK, persistent
  session). The court may then see a later item before an older one; it notices the gap and fills it. Every item's
  interval then starts again at ``receipt_timeout_s`` (:meth:`ResendSchedule.reconnected`).
* While connected, an item the broker acknowledged but the court has not receipted is sent again by itself (never
  with the queue behind it), only when its own interval has passed since its own last sending. Each item's interval
  starts at ``receipt_timeout_s`` and doubles with each re-send of that item, up to ``receipt_timeout_max_s``;
  receipts for other items do not reset it. An overdue item is sent again (:meth:`ResendSchedule.choose`) when

  - the court has receipted an item first sent after this one's last sending (so this copy was lost on the way:
    the broker dropped it, or the court could not commit it), or
  - it is among the oldest items not receipted and no receipt at all has arrived for the oldest one's interval: a
    probe (the court is down, or the copies were lost). A probe is the oldest item alone, unless the court
    receipted the last probe and nothing else (it has no backlog of ours, so the copies behind it were lost): then
    twice as many of the oldest as last time (up to ``window``).

  So a court that is down gets one copy per interval (doubling), the broker's queue for it does not grow with the
  seal's, and a slow court that keeps receipting in order gets no extra copies.
"""

from __future__ import annotations

import logging
from collections.abc import Collection

logger = logging.getLogger(__name__)


class ResendSchedule:
    """The sendings of the items not receipted yet, and which of them to send again by themselves. Not thread-safe."""

    def __init__(self, *, name: str, window: int, receipt_timeout_s: float, receipt_timeout_max_s: float) -> None:
        if not 0 < receipt_timeout_s <= receipt_timeout_max_s:
            raise ValueError("need 0 < receipt_timeout_s <= receipt_timeout_max_s")
        self.name = name
        self.window = window
        self.receipt_timeout_s = receipt_timeout_s
        self.receipt_timeout_max_s = receipt_timeout_max_s
        self._check_every = min(1.0, receipt_timeout_s / 4)
        self.sent_at: dict[int, float] = {}  # key -> monotonic time it was last handed out; not receipted yet
        self._first_sent_at: dict[int, float] = {}  # key -> when it was first handed out; not receipted yet
        self._interval: dict[int, float] = {}  # key -> its re-send interval, if not receipt_timeout_s
        self.resend: set[int] = set()  # keys to send again by themselves, next time there is room
        self._receipted_first_sent = float("-inf")  # latest first sending of a receipted item: later sends got through
        self._last_receipt_at = 0.0  # when a receipt last removed an item (or the link came up)
        self._probe_size = 1  # how many of the oldest items the last probe sent again
        self._probed: set[int] = set()  # the keys of the last probe
        self._probe_answered = False  # a receipt named one of them since
        self._receipted_other = False  # a receipt named another item since the last probe
        self.next_check = 0.0

    def sent(self, key: int, now: float) -> None:
        """``key`` was handed to the publisher in key order (its first sending, or one after a reconnect)."""
        self.sent_at[key] = now
        self._first_sent_at.setdefault(key, now)

    def sent_again(self, key: int, now: float) -> None:
        """``key`` was sent again by itself, or met in a pass while the MQTT client still holds it."""
        self.sent_at[key] = now

    def reconnected(self, now: float) -> None:
        """The link came up: everything is sent again in order, and every interval starts again at the base."""
        self.resend.clear()
        self._interval.clear()
        self._last_receipt_at = now
        self._probe_size, self._probed = 1, set()

    def receipted(self, keys: Collection[int], now: float) -> None:
        """A receipt removed ``keys`` from the queue."""
        for key in keys:
            self.sent_at.pop(key, None)
            self._interval.pop(key, None)
            self.resend.discard(key)
            first = self._first_sent_at.pop(key, None)
            if first is not None:
                self._receipted_first_sent = max(self._receipted_first_sent, first)
        if keys:
            self._last_receipt_at = now
            self._probe_answered = self._probe_answered or not self._probed.isdisjoint(keys)
            self._receipted_other = self._receipted_other or not self._probed.issuperset(keys)

    def check_due(self, now: float) -> bool:
        """Whether it is time to look for overdue items (at most every quarter interval, ≤ 1 s); if so, the next
        check is scheduled."""
        if not self.sent_at or now < self.next_check:
            return False
        self.next_check = now + self._check_every
        return True

    def choose(self, now: float, *, cursor: int, in_flight: Collection[int]) -> None:
        """Add to :attr:`resend` the overdue items a later receipt shows lost, or the oldest as a probe."""
        # Those ahead of the cursor are sent again by the current pass anyway.
        waiting = [k for k in self.sent_at if k <= cursor and k not in in_flight and k not in self.resend]
        overdue = [k for k in waiting if now - self.sent_at[k] >= self.interval_of(k)]
        lost = [k for k in overdue if self.sent_at[k] < self._receipted_first_sent]
        oldest = min(self.sent_at)
        silent = now - self._last_receipt_at >= self.interval_of(oldest)  # no receipt for the probe's interval
        probe: list[int] = []
        if oldest in overdue and oldest not in lost and silent:
            # The court receipted the last probe and nothing else (so it has no backlog of ours): the copies behind
            # the probe were lost, twice as many next time. Else (down, or busy with a backlog) one.
            grow = self._probe_answered and not self._receipted_other
            self._probe_size = min(self._probe_size * 2, self.window) if grow else 1
            probe = sorted(k for k in overdue if k not in lost)[: self._probe_size]
            self._probed, self._probe_answered, self._receipted_other = set(probe), False, False
        chosen = sorted(lost + probe)
        if not chosen:
            return
        logger.warning(
            "%d %s not receipted by the court within %g s (%s): sending them again",
            len(chosen),
            self.name,
            self.interval_of(chosen[0]),
            f"no receipt meanwhile, {len(probe)} oldest as a probe" if probe else "later ones were receipted",
        )
        for key in chosen:
            self._interval[key] = min(self.interval_of(key) * 2, self.receipt_timeout_max_s)
        self.resend.update(chosen)

    def interval_of(self, key: int) -> float:
        return self._interval.get(key, self.receipt_timeout_s)

    def forget(self, key: int) -> None:
        """``key`` left the queue without a receipt (a thinned snapshot)."""
        self.sent_at.pop(key, None)
        self._first_sent_at.pop(key, None)
        self._interval.pop(key, None)
        self.resend.discard(key)

    def pass_ended(self, start: int, at: float, in_flight: Collection[int]) -> None:
        """A pass that re-sent from key ``start`` at ``at`` reached the end: what it did not meet has left the
        queue."""
        gone = [k for k, t in self.sent_at.items() if k > start and t < at and k not in in_flight]
        for key in gone:
            self.forget(key)
