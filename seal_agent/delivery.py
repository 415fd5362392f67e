"""The courier: drains one durable queue (events, or snapshots) through the MQTT publisher, oldest first.

A seal has two couriers, one per :class:`~seal_agent.interfaces.Lane`: events in ``seq`` order, and snapshots in the
order they were queued. Both queues live in the outbox database; each courier only knows its queue's
``pending(after, limit)`` and ``ack(key)`` and the function that publishes one item.

One worker thread owns all delivery state; the publisher's callbacks (paho's network thread) and new events
(the sensor's thread) only put messages on its queue. While connected, at most ``window`` events are handed to the
publisher and not yet acknowledged, always the oldest ones, in ``seq`` order. The MQTT client keeps what it was handed
across reconnects and resends it (QoS 1, persistent session), so after a reconnect the courier simply goes on.
After a restart the outbox still holds every unacknowledged event and the courier starts from the oldest.

A PUBACK with a failure reason (e.g. "Not authorized") keeps the event in the outbox: the courier logs it,
stops handing out new events, and after ``retry_s`` starts again from the oldest unacknowledged event. Events
already in flight behind the refused one cannot be recalled, so after a refusal the court may see a later
``seq`` before the refused one arrives; it notices the gap and fills it when the retry succeeds.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from seal_agent.errors import OutboxError, PublishError
from seal_agent.interfaces import Clock

logger = logging.getLogger(__name__)


class Pending(Protocol):
    @property
    def key(self) -> int:
        """Increasing position of the item in its queue."""


ItemT = TypeVar("ItemT", bound=Pending)
ItemT_co = TypeVar("ItemT_co", bound=Pending, covariant=True)


class DeliveryQueue(Protocol[ItemT_co]):
    """A durable queue: unacknowledged items with ``key > after``, oldest first; ``ack`` deletes one."""

    def pending(self, *, after: int, limit: int) -> Sequence[ItemT_co]: ...

    def ack(self, key: int) -> bool: ...


@dataclass(frozen=True, slots=True)
class _Ack:
    seq: int
    failure: str | None


@dataclass(frozen=True, slots=True)
class _Connection:
    connected: bool


class _Wake:
    pass


class _Stop:
    pass


_Message = _Ack | _Connection | _Wake | _Stop


class Courier(Generic[ItemT]):
    """Delivers the items of ``source`` with ``send``; call :meth:`notify` after each new item.

    The caller routes the publisher's acknowledgements and connection changes to :meth:`on_ack` and
    :meth:`on_connection`; ``connected`` tells whether the publisher is connected now.
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
    ) -> None:
        if window < 1:
            raise ValueError("window must be at least 1")
        self._outbox = source
        self._send = send
        self._connected = connected
        self.name = name
        self._clock = clock
        self.window = window
        self.retry_s = retry_s
        self._queue: queue.SimpleQueue[_Message] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        # Owned by the worker thread:
        self._cursor = 0  # highest seq handed to the publisher by this process
        self._in_flight: set[int] = set()
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
        """Wait until every item is acknowledged and none is left; False on timeout or if not connected."""
        if not self._connected():
            return False
        with self._idle:
            return self._idle.wait_for(lambda: self._drained, timeout)

    def on_ack(self, key: int, failure: str | None) -> None:
        self._queue.put(_Ack(key, failure))

    def on_connection(self, connected: bool) -> None:
        self._queue.put(_Connection(connected))

    def _run(self) -> None:
        while True:
            timeout = None
            if self._stalled_until is not None:
                timeout = max(0.0, self._stalled_until - self._clock.monotonic())
            try:
                message = self._queue.get(timeout=timeout)
            except queue.Empty:
                message = _Wake()
            if isinstance(message, _Stop):
                return
            try:
                self._handle(message)
                self._fill_window()
            except Exception:  # the worker's top level: log and keep delivering
                logger.exception("%s courier error; retrying in %.0f s", self.name, self.retry_s)
                self._stall()

    def _handle(self, message: _Message) -> None:
        if isinstance(message, _Ack):
            self._in_flight.discard(message.seq)
            if message.failure is None:
                self._outbox.ack(message.seq)
            else:
                logger.error(
                    "broker refused %s%d (%s); it stays in the outbox, retry in %.0f s",
                    "event seq=" if self.name == "events" else f"{self.name} #",
                    message.seq,
                    message.failure,
                    self.retry_s,
                )
                self._stall()
        elif isinstance(message, _Connection):
            logger.debug("%s courier: broker %s", self.name, "connected" if message.connected else "disconnected")

    def _stall(self) -> None:
        self._stalled_until = self._clock.monotonic() + self.retry_s

    def _fill_window(self) -> None:
        if self._stalled_until is not None:
            if self._in_flight or self._clock.monotonic() < self._stalled_until:
                return
            self._stalled_until = None
            self._cursor = 0  # start again from the oldest unacknowledged event
        if not self._connected():
            # Handed to paho now, an item would go out as soon as the socket is open, before the older items paho
            # re-sends at CONNACK: order is kept by waiting for the connection (the courier is told about it).
            self._update_drained()
            return
        room = self.window - len(self._in_flight)
        while room > 0:
            batch = self._outbox.pending(after=self._cursor, limit=room)
            if not batch:
                break
            for item in batch:
                try:
                    self._send(item)
                except PublishError as exc:
                    logger.error("cannot hand %s item %d to MQTT: %s", self.name, item.key, exc)
                    self._stall()
                    return
                self._in_flight.add(item.key)
                self._cursor = item.key
                room -= 1
        self._update_drained()

    def _update_drained(self) -> None:
        drained = False
        if not self._in_flight:
            try:
                drained = not self._outbox.pending(after=0, limit=1)
            except OutboxError:
                logger.exception("cannot read the outbox")
        with self._idle:
            self._drained = drained
            if drained:
                self._idle.notify_all()
