"""The courier: drains one durable queue (events, or snapshots) through the MQTT publisher, oldest first, until the
court's receipts empty it.

A seal has two couriers, one per :class:`~seal_agent.interfaces.Lane`: events in ``seq`` order, and snapshots in the
order they were queued. Both queues live in the outbox database; each courier only knows its queue
(:class:`DeliveryQueue`) and the function that publishes one item.

One worker thread owns all delivery state; the publisher's callbacks (paho's network thread), receipts and new
events (the sensor's thread) only put messages on its queue. While connected, at most ``window`` items are handed to
the publisher and not yet acknowledged by the broker, always in key order.

Two acknowledgements, two meanings:

* The broker's PUBACK (success code) means the broker took the message. The item is marked broker-acknowledged and
  *stays* in its queue: a broker that loses its store, or drops a message for a slow subscriber, would lose it.
* The court's receipt, verified by the seal's core and routed here with :meth:`Courier.on_receipt`, names the SHA-256
  of the bytes the court committed; only then does the item leave its queue (:meth:`DeliveryQueue.court_receipted`).

Re-sending (harmless: the court treats identical bytes as a no-op duplicate and receipts them again):

* After every (re)connect the courier starts again from the oldest item not receipted and sends everything in key
  order, except what the MQTT client itself still holds unacknowledged (it re-sends that at CONNACK, persistent
  session). The court may then see a later item before an older one; it notices the gap and fills it.
* While connected, an item the broker acknowledged but the court has not receipted is sent again by itself (never
  with the queue behind it), only when its own interval has passed since its own last sending. Each item's interval
  starts at ``receipt_timeout_s`` and doubles with each re-send of that item, up to ``receipt_timeout_max_s``;
  receipts for other items do not reset it. An overdue item is sent again when

  - the court has receipted an item first sent after this one's last sending (so this copy was lost on the way:
    the broker dropped it, or the court could not commit it), or
  - it is among the oldest items not receipted and no receipt at all has arrived for the oldest one's interval: a
    probe (the court is down, or the copies were lost). A probe is the oldest item alone, unless the court
    receipted the last probe and nothing else (it has no backlog of ours, so the copies behind it were lost): then
    twice as many of the oldest as last time (up to ``window``).

  So a court that is down gets one copy per interval (doubling), the broker's queue for it does not grow with the
  seal's, and a slow court that keeps receipting in order gets no extra copies.
* After a reconnect everything not receipted is sent again (the broker may have lost it) and every item's interval
  starts again at ``receipt_timeout_s``.

A PUBACK with a failure reason (e.g. "Not authorized") keeps the item: the courier logs it, stops handing out new
items, and after ``retry_s`` starts again from the oldest item not receipted.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from seal_agent.errors import OutboxError, PublishError
from seal_agent.interfaces import Clock

logger = logging.getLogger(__name__)

#: Default time the court has to receipt a sent item before it is sent again, and the ceiling of its doubling.
RECEIPT_TIMEOUT_S = 60.0
RECEIPT_TIMEOUT_MAX_S = 3600.0
#: At most this many queued messages (mostly PUBACKs) are handled together, their marks in one transaction.
_MAX_MESSAGES = 256


class Pending(Protocol):
    @property
    def key(self) -> int:
        """Increasing position of the item in its queue."""


ItemT = TypeVar("ItemT", bound=Pending)
ItemT_co = TypeVar("ItemT_co", bound=Pending, covariant=True)


class DeliveryQueue(Protocol[ItemT_co]):
    """A durable queue of items the court has not receipted, in key order."""

    def pending(self, *, after: int, limit: int) -> Sequence[ItemT_co]:
        """Items not receipted with ``key > after``, oldest first."""

    def broker_acknowledged(self, keys: Collection[int]) -> None:
        """Record that the broker acknowledged these items (they stay queued)."""

    def court_receipted(self, hashes: Collection[str]) -> list[int]:
        """Delete the items whose SHA-256 a verified court receipt names; return their keys."""


@dataclass(frozen=True, slots=True)
class _Ack:
    key: int
    failure: str | None


@dataclass(frozen=True, slots=True)
class _Receipt:
    hashes: frozenset[str]


@dataclass(frozen=True, slots=True)
class _Connection:
    connected: bool


class _Wake:
    pass


class _Stop:
    pass


_Message = _Ack | _Receipt | _Connection | _Wake | _Stop


class Courier(Generic[ItemT]):
    """Delivers the items of ``source`` with ``send``; call :meth:`notify` after each new item.

    The owner routes the publisher's acknowledgements and connection changes to :meth:`on_ack` and
    :meth:`on_connection`, and the court's verified receipts to :meth:`on_receipt`; ``connected`` tells whether the
    publisher is connected now.
    """

    def __init__(
        self,
        source: DeliveryQueue[ItemT],
        send: Callable[[ItemT], None],
        clock: Clock,
        *,
        connected: Callable[[], bool],
        name: str = "events",
        window: int = 20,
        retry_s: float = 30.0,
        receipt_timeout_s: float = RECEIPT_TIMEOUT_S,
        receipt_timeout_max_s: float = RECEIPT_TIMEOUT_MAX_S,
    ) -> None:
        if window < 1:
            raise ValueError("window must be at least 1")
        if not 0 < receipt_timeout_s <= receipt_timeout_max_s:
            raise ValueError("need 0 < receipt_timeout_s <= receipt_timeout_max_s")
        self._source = source
        self._send = send
        self._connected = connected
        self.name = name
        self._clock = clock
        self.window = window
        self.retry_s = retry_s
        self.receipt_timeout_s = receipt_timeout_s
        self.receipt_timeout_max_s = receipt_timeout_max_s
        self._check_every = min(1.0, receipt_timeout_s / 4)
        self._queue: queue.SimpleQueue[_Message] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        # Owned by the worker thread:
        self._cursor = 0  # highest key handed to the publisher in the current pass
        self._in_flight: set[int] = set()  # handed to the publisher, no PUBACK yet
        self._sent_at: dict[int, float] = {}  # key -> monotonic time it was last handed out; not receipted yet
        self._first_sent_at: dict[int, float] = {}  # key -> when it was first handed out; not receipted yet
        self._interval: dict[int, float] = {}  # key -> its re-send interval, if not receipt_timeout_s
        self._resend: set[int] = set()  # keys to send again by themselves, next time there is room
        self._receipted_first_sent = float("-inf")  # latest first sending of a receipted item: later sends got through
        self._last_receipt_at = 0.0  # when a receipt last removed an item (or the link came up)
        self._probe_size = 1  # how many of the oldest items the last probe sent again
        self._probed: set[int] = set()  # the keys of the last probe
        self._probe_answered = False  # a receipt named one of them since
        self._receipted_other = False  # a receipt named another item since the last probe
        self._next_check = 0.0
        self._rewound: tuple[int, float] | None = None  # (from key, at) of a pass that re-sends
        self._stalled_until: float | None = None
        # Shared, for wait_drained():
        self._idle = threading.Condition()
        self._drained = False

    def start(self) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name=f"seal-courier-{self.name}", daemon=True)
        self._thread.start()
        self.notify()

    def stop(self, timeout: float = 5.0) -> None:
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._queue.put(_Stop())
        thread.join(timeout)

    def notify(self) -> None:
        """A new item was committed to the queue."""
        with self._idle:
            self._drained = False
        self._queue.put(_Wake())

    def wait_drained(self, timeout: float) -> bool:
        """Wait until the court has receipted every item and none is left; False on timeout or if not connected."""
        if not self._connected():
            return False
        with self._idle:
            return self._idle.wait_for(lambda: self._drained, timeout)

    def on_ack(self, key: int, failure: str | None) -> None:
        """The broker's PUBACK for ``key`` (``failure`` None: accepted)."""
        self._queue.put(_Ack(key, failure))

    def on_receipt(self, hashes: Collection[str]) -> None:
        """A verified court receipt: the court committed the messages with these SHA-256s."""
        self._queue.put(_Receipt(frozenset(hashes)))

    def on_connection(self, connected: bool) -> None:
        self._queue.put(_Connection(connected))

    # -- worker thread ----------------------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            messages = self._next_messages()
            stopping = any(isinstance(message, _Stop) for message in messages)
            try:
                self._handle(messages)
                if stopping:
                    return
                self._check_receipt_timeout()
                self._fill_window()
            except Exception:  # the worker's top level: log and keep delivering
                logger.exception("%s courier error; retrying in %.0f s", self.name, self.retry_s)
                if stopping:
                    return
                self._stall()

    def _next_messages(self) -> list[_Message]:
        """The next message (waiting at most until a stall or a receipt check is due) and those queued behind it."""
        now = self._clock.monotonic()
        # A stall that has run out waits for the PUBACKs still in flight, which come as messages.
        deadlines = [self._stalled_until] if self._stalled_until is not None and self._stalled_until > now else []
        if self._sent_at:
            deadlines.append(self._next_check)
        timeout = max(0.0, min(deadlines) - now) if deadlines else None
        try:
            messages: list[_Message] = [self._queue.get(timeout=timeout)]
        except queue.Empty:
            return [_Wake()]
        while len(messages) < _MAX_MESSAGES:
            try:
                messages.append(self._queue.get_nowait())
            except queue.Empty:
                break
        return messages

    def _handle(self, messages: list[_Message]) -> None:
        acknowledged = []
        for message in messages:
            if isinstance(message, _Ack):
                self._in_flight.discard(message.key)
                if message.failure is None:
                    acknowledged.append(message.key)
                else:
                    logger.error(
                        "broker refused %s%d (%s); it stays in the outbox, retry in %.0f s",
                        "event seq=" if self.name == "events" else f"{self.name} #",
                        message.key,
                        message.failure,
                        self.retry_s,
                    )
                    self._stall()
            elif isinstance(message, _Receipt):
                self._receipted(message.hashes)
            elif isinstance(message, _Connection):
                logger.debug("%s courier: broker %s", self.name, "connected" if message.connected else "disconnected")
                if message.connected:
                    self._rewind(0)  # the broker may have lost what it acknowledged: send all not receipted
                    self._resend.clear()
                    self._interval.clear()  # and every item's back-off starts again
                    self._last_receipt_at = self._clock.monotonic()
                    self._probe_size, self._probed = 1, set()
            elif isinstance(message, _Stop):
                break
        if acknowledged:
            try:
                self._source.broker_acknowledged(acknowledged)
            except OutboxError as exc:  # only a mark: the items stay queued either way
                logger.warning("cannot mark %d %s as broker-acknowledged: %s", len(acknowledged), self.name, exc)

    def _receipted(self, hashes: frozenset[str]) -> None:
        keys = self._source.court_receipted(hashes)
        for key in keys:
            self._sent_at.pop(key, None)
            self._interval.pop(key, None)
            self._resend.discard(key)
            first = self._first_sent_at.pop(key, None)
            if first is not None:
                self._receipted_first_sent = max(self._receipted_first_sent, first)
        if keys:
            self._last_receipt_at = self._clock.monotonic()
            self._probe_answered = self._probe_answered or not self._probed.isdisjoint(keys)
            self._receipted_other = self._receipted_other or not self._probed.issuperset(keys)
            logger.debug("court receipted %d %s", len(keys), self.name)

    def _check_receipt_timeout(self) -> None:
        """Choose what to send again by itself: overdue items a later receipt shows lost, or the oldest as a probe."""
        now = self._clock.monotonic()
        if not self._sent_at or now < self._next_check:
            return
        self._next_check = now + self._check_every
        if not self._connected():
            return
        # Those ahead of the cursor are sent again by the current pass anyway.
        waiting = [k for k in self._sent_at if k <= self._cursor and k not in self._in_flight and k not in self._resend]
        overdue = [k for k in waiting if now - self._sent_at[k] >= self._interval_of(k)]
        lost = [k for k in overdue if self._sent_at[k] < self._receipted_first_sent]
        oldest = min(self._sent_at)
        silent = now - self._last_receipt_at >= self._interval_of(oldest)  # no receipt for the probe's interval
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
            self._interval_of(chosen[0]),
            f"no receipt meanwhile, {len(probe)} oldest as a probe" if probe else "later ones were receipted",
        )
        for key in chosen:
            self._interval[key] = min(self._interval_of(key) * 2, self.receipt_timeout_max_s)
        self._resend.update(chosen)

    def _interval_of(self, key: int) -> float:
        return self._interval.get(key, self.receipt_timeout_s)

    def _rewind(self, key: int) -> None:
        self._cursor = min(self._cursor, key)
        self._rewound = (self._cursor, self._clock.monotonic())

    def _stall(self) -> None:
        self._stalled_until = self._clock.monotonic() + self.retry_s

    def _fill_window(self) -> None:
        if self._stalled_until is not None:
            if self._in_flight or self._clock.monotonic() < self._stalled_until:
                return
            self._stalled_until = None
            self._rewind(0)  # start again from the oldest item not receipted
        if not self._connected():
            # Handed to paho now, an item would go out as soon as the socket is open, before the older items paho
            # re-sends at CONNACK: order is kept by waiting for the connection (the courier is told about it).
            self._update_drained()
            return
        room = self.window - len(self._in_flight)
        room = self._send_again(room)
        while room > 0:
            batch = self._source.pending(after=self._cursor, limit=room)
            if not batch:
                self._pass_ended()
                break
            for item in batch:
                self._cursor = item.key
                if item.key in self._in_flight:  # the MQTT client still holds it and re-sends it itself
                    self._sent_at[item.key] = self._clock.monotonic()
                    continue
                try:
                    self._send(item)
                except PublishError as exc:
                    logger.error("cannot hand %s item %d to MQTT: %s", self.name, item.key, exc)
                    self._stall()
                    return
                self._in_flight.add(item.key)
                self._sent_at[item.key] = now = self._clock.monotonic()
                self._first_sent_at.setdefault(item.key, now)
                room -= 1
        self._update_drained()

    def _send_again(self, room: int) -> int:
        """Send the items chosen by :meth:`_check_receipt_timeout` by themselves, oldest first; the room left."""
        for key in sorted(self._resend):
            if room <= 0:
                break
            self._resend.discard(key)
            if key in self._in_flight or key > self._cursor:  # the MQTT client or the current pass sends it anyway
                continue
            found = self._source.pending(after=key - 1, limit=1)
            if not found or found[0].key != key:  # receipted or thinned meanwhile
                self._forget(key)
                continue
            try:
                self._send(found[0])
            except PublishError as exc:
                logger.error("cannot hand %s item %d to MQTT: %s", self.name, key, exc)
                self._resend.add(key)
                self._stall()
                return 0
            self._in_flight.add(key)
            self._sent_at[key] = self._clock.monotonic()
            room -= 1
        return room

    def _forget(self, key: int) -> None:
        self._sent_at.pop(key, None)
        self._first_sent_at.pop(key, None)
        self._interval.pop(key, None)
        self._resend.discard(key)

    def _pass_ended(self) -> None:
        """A re-sending pass reached the end: what it did not meet has left the queue (a thinned snapshot)."""
        if self._rewound is None:
            return
        start, at = self._rewound
        self._rewound = None
        gone = [k for k, t in self._sent_at.items() if k > start and t < at and k not in self._in_flight]
        for key in gone:
            self._forget(key)

    def _update_drained(self) -> None:
        drained = False
        if not self._in_flight:
            try:
                drained = not self._source.pending(after=0, limit=1)
            except OutboxError:
                logger.exception("cannot read the outbox")
        with self._idle:
            self._drained = drained
            if drained:
                self._idle.notify_all()
