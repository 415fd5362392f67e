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
* While connected, an item the broker acknowledged but the court has not receipted within ``receipt_timeout_s`` of
  its sending is sent again, with the items after it. The timeout doubles (up to ``receipt_timeout_max_s``) each time
  that happens without a receipt in between, and goes back to ``receipt_timeout_s`` with the next receipt.

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
        self._timeout = receipt_timeout_s
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
        if keys:
            self._timeout = self.receipt_timeout_s
            logger.debug("court receipted %d %s", len(keys), self.name)

    def _check_receipt_timeout(self) -> None:
        """Send again, from the oldest one, what the broker took but the court has not receipted in time."""
        now = self._clock.monotonic()
        if not self._sent_at or now < self._next_check:
            return
        self._next_check = now + self._check_every
        if not self._connected():
            return
        overdue = [
            key
            for key, at in self._sent_at.items()
            if key <= self._cursor and key not in self._in_flight and now - at >= self._timeout
        ]
        if not overdue:  # those ahead of the cursor are sent again by the current pass anyway
            return
        logger.warning(
            "%d %s not receipted by the court within %g s: sending them again from the oldest",
            len(overdue),
            self.name,
            self._timeout,
        )
        self._rewind(min(overdue) - 1)
        self._timeout = min(self._timeout * 2, self.receipt_timeout_max_s)

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
                self._sent_at[item.key] = self._clock.monotonic()
                room -= 1
        self._update_drained()

    def _pass_ended(self) -> None:
        """A re-sending pass reached the end: what it did not meet has left the queue (a thinned snapshot)."""
        if self._rewound is None:
            return
        start, at = self._rewound
        self._rewound = None
        gone = [k for k, t in self._sent_at.items() if k > start and t < at and k not in self._in_flight]
        for key in gone:
            del self._sent_at[key]

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
