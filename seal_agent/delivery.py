"""The courier: drains the outbox through a :class:`~seal_agent.interfaces.Publisher`, in ``seq`` order.

One worker thread owns all delivery state; the publisher's callbacks (paho's network thread) and new events
(the sensor's thread) only put messages on its queue. At most ``window`` events are handed to the publisher
and not yet acknowledged, always the oldest ones, in ``seq`` order. The MQTT client keeps what it was handed
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
from dataclasses import dataclass

from seal_agent.errors import OutboxError, PublishError
from seal_agent.interfaces import Clock, Publisher
from seal_agent.outbox import Outbox

logger = logging.getLogger(__name__)


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


class Courier:
    """Delivers outbox events through ``publisher``; call :meth:`notify` after each new event."""

    def __init__(
        self, outbox: Outbox, publisher: Publisher, clock: Clock, *, window: int = 20, retry_s: float = 30.0
    ) -> None:
        if window < 1:
            raise ValueError("window must be at least 1")
        self._outbox = outbox
        self._publisher = publisher
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
        publisher.bind(on_ack=self._on_ack, on_connection=self._on_connection)

    def start(self) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="seal-courier", daemon=True)
        self._thread.start()
        self.notify()

    def stop(self, timeout: float = 5.0) -> None:
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._queue.put(_Stop())
        thread.join(timeout)

    def notify(self) -> None:
        """A new event was committed to the outbox."""
        with self._idle:
            self._drained = False
        self._queue.put(_Wake())

    def wait_drained(self, timeout: float) -> bool:
        """Wait until every event is acknowledged and none is left; False on timeout or if not connected."""
        if not self._publisher.connected:
            return False
        with self._idle:
            return self._idle.wait_for(lambda: self._drained, timeout)

    def _on_ack(self, seq: int, failure: str | None) -> None:
        self._queue.put(_Ack(seq, failure))

    def _on_connection(self, connected: bool) -> None:
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
                logger.exception("courier error; retrying in %.0f s", self.retry_s)
                self._stall()

    def _handle(self, message: _Message) -> None:
        if isinstance(message, _Ack):
            self._in_flight.discard(message.seq)
            if message.failure is None:
                self._outbox.ack(message.seq)
            else:
                logger.error(
                    "broker refused event seq=%d (%s); it stays in the outbox, retry in %.0f s",
                    message.seq,
                    message.failure,
                    self.retry_s,
                )
                self._stall()
        elif isinstance(message, _Connection):
            logger.info("courier: broker %s", "connected" if message.connected else "disconnected")

    def _stall(self) -> None:
        self._stalled_until = self._clock.monotonic() + self.retry_s

    def _fill_window(self) -> None:
        if self._stalled_until is not None:
            if self._in_flight or self._clock.monotonic() < self._stalled_until:
                return
            self._stalled_until = None
            self._cursor = 0  # start again from the oldest unacknowledged event
        room = self.window - len(self._in_flight)
        while room > 0:
            batch = self._outbox.pending(after_seq=self._cursor, limit=room)
            if not batch:
                break
            for event in batch:
                try:
                    self._publisher.publish_event(event.seq, event.data)
                except PublishError as exc:
                    logger.error("cannot hand event seq=%d to MQTT: %s", event.seq, exc)
                    self._stall()
                    return
                self._in_flight.add(event.seq)
                self._cursor = event.seq
                room -= 1
        self._update_drained()

    def _update_drained(self) -> None:
        drained = False
        if not self._in_flight:
            try:
                drained = not self._outbox.pending(after_seq=0, limit=1)
            except OutboxError:
                logger.exception("cannot read the outbox")
        with self._idle:
            self._drained = drained
            if drained:
                self._idle.notify_all()
