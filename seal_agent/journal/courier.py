"""The courier: drains one durable queue (events, or snapshots) through the MQTT publisher, oldest first, until the
court's receipts empty it.

A seal has two couriers, one per :class:`~seal_agent.interfaces.Lane`, both owned by
:class:`~seal_agent.journal.delivery.Delivery`, which routes their PUBACKs and the court's receipts to them: events in
``seq`` order, and snapshots in the order they were queued. Both queues live in the outbox database; each courier only
knows its queue (:class:`DeliveryQueue`) and the function that publishes one item. A PUBACK marks an item
broker-acknowledged (it stays queued); only a court receipt naming its SHA-256 removes it.

One worker thread owns all delivery state; the publisher's callbacks (paho's network thread), receipts and new
events (the recorder's callers' threads) only put messages on its queue. While connected, at most ``window`` items are
handed to the publisher and not yet acknowledged by the broker, always in key order.

After every (re)connect the courier sends everything not receipted again, in key order (the broker may have lost
it). It hands nothing out on a connection before it has handled that connection's coming up, a message on its queue
like the PUBACKs: the publisher counts as connected from its CONNACK, and an item handed out before the courier
rewinds may be PUBACKed by then, no longer in flight, and sent a second time by the pass the rewind starts. Nor while
a connection change it was told of waits on its queue: the link may have dropped and come back since the coming up
it handled last. While
connected, an item the court does not receipt in time is sent again by itself, with a doubling interval
(the rules: :mod:`seal_agent.journal.resend`).

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
from seal_agent.journal.resend import ResendSchedule

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

    Its :class:`~seal_agent.journal.delivery.Delivery` routes the publisher's acknowledgements and connection changes
    to :meth:`on_ack` and :meth:`on_connection`, and the court's verified receipts to :meth:`on_receipt`; ``connected``
    tells whether the publisher is connected now.
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
        self._resends = ResendSchedule(
            name=name, window=window, receipt_timeout_s=receipt_timeout_s, receipt_timeout_max_s=receipt_timeout_max_s
        )
        self._source = source
        self._send = send
        self._connected = connected
        self.name = name
        self._clock = clock
        self.window = window
        self.retry_s = retry_s
        self._queue: queue.SimpleQueue[_Message] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        # Owned by the worker thread:
        self._cursor = 0  # highest key handed to the publisher in the current pass
        self._in_flight: set[int] = set()  # handed to the publisher, no PUBACK yet
        self._link_up = False  # the last connection change handled was the link coming up (and its pass started)
        self._changes_handled = 0  # connection changes handled, of the ``_changes_told``
        # Shared: connection changes put on the queue (counted and put under the lock, in the queue's order)
        self._changes_told = 0
        self._told_lock = threading.Lock()
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
        with self._told_lock:
            self._changes_told += 1
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
        if self._resends.sent_at:
            deadlines.append(self._resends.next_check)
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
                try:
                    self._receipted(message.hashes)
                except Exception:  # not raised past the messages behind it: a connection change lost would stall
                    logger.exception(
                        "%s courier: cannot apply a court receipt; retrying in %.0f s", self.name, self.retry_s
                    )
                    self._stall()  # the items stay queued: sent again, the court receipts them again
            elif isinstance(message, _Connection):
                logger.debug("%s courier: broker %s", self.name, "connected" if message.connected else "disconnected")
                self._link_up = message.connected
                self._changes_handled += 1
                if message.connected:
                    self._rewind(0)  # the broker may have lost what it acknowledged: send all not receipted
                    self._resends.reconnected(self._clock.monotonic())  # and every item's back-off starts again
            elif isinstance(message, _Stop):
                break
        if acknowledged:
            try:
                self._source.broker_acknowledged(acknowledged)
            except OutboxError as exc:  # only a mark: the items stay queued either way
                logger.warning("cannot mark %d %s as broker-acknowledged: %s", len(acknowledged), self.name, exc)

    def _receipted(self, hashes: frozenset[str]) -> None:
        keys = self._source.court_receipted(hashes)
        self._resends.receipted(keys, self._clock.monotonic())
        if keys:
            logger.debug("court receipted %d %s", len(keys), self.name)

    def _check_receipt_timeout(self) -> None:
        """Choose what to send again by itself: overdue items a later receipt shows lost, or the oldest as a probe."""
        now = self._clock.monotonic()
        if self._resends.check_due(now) and self._can_send():
            self._resends.choose(now, cursor=self._cursor, in_flight=self._in_flight)

    def _can_send(self) -> bool:
        """Connected now, and this connection's coming up handled. Handed to paho while it is not connected, an item
        would go out as soon as the socket is open, before the older items paho re-sends at CONNACK; handed out
        between the CONNACK and the courier's handling of it, it would go again in the pass that starts then. The
        link is read first: connected then, with every change told since handled, it is the link whose coming up
        was handled last (a drop and a new CONNACK in between would have told a change first)."""
        return self._connected() and self._changes_handled == self._changes_told and self._link_up

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
        if not self._can_send():
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
                    self._resends.sent_again(item.key, self._clock.monotonic())
                    continue
                try:
                    self._send(item)
                except PublishError as exc:
                    logger.error("cannot hand %s item %d to MQTT: %s", self.name, item.key, exc)
                    self._stall()
                    return
                self._in_flight.add(item.key)
                self._resends.sent(item.key, self._clock.monotonic())
                room -= 1
        self._update_drained()

    def _send_again(self, room: int) -> int:
        """Send the items chosen by :meth:`_check_receipt_timeout` by themselves, oldest first; the room left."""
        resend = self._resends.resend
        for key in sorted(resend):
            if room <= 0:
                break
            resend.discard(key)
            if key in self._in_flight or key > self._cursor:  # the MQTT client or the current pass sends it anyway
                continue
            found = self._source.pending(after=key - 1, limit=1)
            if not found or found[0].key != key:  # receipted or thinned meanwhile
                self._resends.forget(key)
                continue
            try:
                self._send(found[0])
            except PublishError as exc:
                logger.error("cannot hand %s item %d to MQTT: %s", self.name, key, exc)
                resend.add(key)
                self._stall()
                return 0
            self._in_flight.add(key)
            self._resends.sent_again(key, self._clock.monotonic())
            room -= 1
        return room

    def _pass_ended(self) -> None:
        """A re-sending pass reached the end: what it did not meet has left the queue (a thinned snapshot)."""
        if self._rewound is None:
            return
        start, at = self._rewound
        self._rewound = None
        self._resends.pass_ended(start, at, self._in_flight)

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
