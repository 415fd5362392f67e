"""What the MQTT ingest has received and not yet stored: how many messages, how many bytes, how old the oldest,
whether storing fails (:class:`IngestProgress`, read by ``/api/health`` and ``/metrics``) — and the bytes bound the
messages at QoS 0 it takes, and the messages a batch takes (:data:`BATCH_BYTES`).

The broker bounds what it has in flight to the court at QoS 1 (``max_inflight_messages``, and from Mosquitto 2.0.13
``max_inflight_bytes``: :mod:`server.seals.broker_config`): the court acknowledges a message after its commit, and the
broker sends no more until it does. Mosquitto 2.0.11 applies the bytes only as it sends a message, not as it moves
queued ones into flight, so the court bounds them itself: past :data:`QOS1_BACKLOG_BYTES` held, paho's thread waits
for the worker to store some before it takes the message (it reads nothing more from the broker meanwhile: the
broker holds the rest, as it holds every message until its acknowledgement). Such a message is never dropped; a
longer wait (the database away) may cost the connection (no keep-alive meanwhile): then the broker sends the
unacknowledged messages again on the next one, duplicates. The bytes held are counted (``seal_ingest_unstored_bytes``).

A message at QoS 0 is never acknowledged: the broker sends each at once and paho's thread takes them as fast as they
come, so a seal's account publishing at QoS 0 (the protocol says QoS 1; a seal never does otherwise) could fill the
court's memory faster than the ingest stores. Past :data:`QOS0_BACKLOG_BYTES` held, a message at QoS 0 is dropped
unread, counted (``seal_messages_dropped``) and logged: QoS 0 is "at most once", and a seal keeps every event and
snapshot until the court's receipt, which a dropped message never gets.
"""

from __future__ import annotations

import heapq
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from server.core.progress import IngestProgress
from server.ingest.results import Message

logger = logging.getLogger(__name__)

#: The bytes of messages received and not yet stored beyond which a message at QoS 0 is dropped (the broker bounds
#: those at QoS 1; a batch of events is about 500 KB, a snapshot at most 8 MiB).
QOS0_BACKLOG_BYTES = 64 * 1024 * 1024
#: A batch takes no more messages once they hold this many bytes (:func:`footprint`; one larger message is a batch of
#: its own): what one transaction holds, decodes and verifies at once, however many messages the broker has sent.
#: The broker's ``max_inflight_bytes``; a batch of events is about 500 KB.
BATCH_BYTES = 64 * 1024 * 1024
#: The bytes of messages held unstored past which paho's thread waits before it takes a message at QoS 1 (one larger
#: message is still taken alone): room for the batch being stored and the next, taken meanwhile (:data:`BATCH_BYTES`
#: each), while a seal's account sending snapshots of 8 MiB cannot fill the court's memory.
QOS1_BACKLOG_BYTES = 2 * BATCH_BYTES
#: What holding a message costs besides its payload and topic (its objects, its place in the queue): a flood of
#: empty messages is bounded too.
MESSAGE_OVERHEAD_BYTES = 1024
#: A run of drops is logged once when it begins, then at most this often (with the count since).
DROP_LOG_INTERVAL_S = 10.0


def footprint(topic: str, payload_size: int) -> int:
    """The bytes a message held costs: its payload, its topic (up to 4 bytes a character in memory: a seal's account
    may name a snapshot's topic of 64 KiB), and :data:`MESSAGE_OVERHEAD_BYTES`."""
    return payload_size + 4 * len(topic) + MESSAGE_OVERHEAD_BYTES


@dataclass(frozen=True, slots=True, eq=False)
class Received:
    """A message as the worker's queue holds it: ``generation`` names the connection whose packet id ``mid`` is;
    ``at`` is when it was received (:meth:`Backlog.received`'s clock, ``time.monotonic()``). Compared by identity: two
    messages that are alike are two."""

    generation: int
    mid: int
    qos: int
    message: Message
    at: float
    urgent: bool = False  # an intrusion or a tamper report: cuts short the worker's linger (.lanes.is_urgent)

    @property
    def footprint(self) -> int:
        """The bytes it costs held (:func:`footprint`)."""
        return footprint(self.message.topic, len(self.message.payload))


class Backlog:
    """The messages received and not stored. Thread-safe: paho's thread receives, the ingest's worker stores.

    The worker stores them out of the order they came (a lane per seal account, taken in turn: :mod:`.lanes`), so
    each message's receive time goes with it (:attr:`Received.at`), and the times held are a count per time with a
    heap of them: a message stored leaves its count at once, and the oldest held is the heap's top (times no longer
    held are taken off the top as they reach it, and the heap is rebuilt from the counts once they are most of it:
    amortized O(log n) a message, in C). ``clock``: the receive times' (``time.monotonic``)."""

    def __init__(
        self,
        *,
        qos0_bytes: int = QOS0_BACKLOG_BYTES,
        qos1_bytes: int = QOS1_BACKLOG_BYTES,
        on_drop: Callable[[], None] | None = None,
        stopping: threading.Event | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._qos0_bytes, self._qos1_bytes = qos0_bytes, qos1_bytes
        self._on_drop = on_drop
        self._stopping = stopping or threading.Event()  # set: a message at QoS 1 is taken at once (the ingest stops)
        self._clock = clock
        self._lock = threading.Lock()
        self._room = threading.Condition(self._lock)  # notified as messages are stored
        self._held: dict[float, int] = {}  # receive time -> messages received then and held
        self._times: list[float] = []  # a heap of the times held, and of some no longer held; its top is held
        self._count = 0  # messages held
        self._bytes = 0
        self._failing_since: float | None = None
        self._drops = 0  # dropped since the last log line
        self._drop_logged_at: float | None = None

    def received(self, qos: int, size: int, topic: str) -> float | None:
        """Hold a message of ``size`` bytes of payload: when it was received (its :attr:`Received.at`); None (and it
        is dropped, counted and logged) for one at QoS 0 whose :func:`footprint` would take the bytes held past the
        bound. One at QoS 1 waits for room (module doc)."""
        cost = footprint(topic, size)
        with self._lock:
            while qos > 0 and self._bytes and self._bytes + cost > self._qos1_bytes and not self._stopping.is_set():
                self._room.wait(0.1)
            now = self._clock()
            if qos > 0 or self._bytes + cost <= self._qos0_bytes:
                if (same := self._held.get(now, 0)) == 0:
                    heapq.heappush(self._times, now)
                self._held[now] = same + 1
                self._count += 1
                self._bytes += cost
                return now
            held, self._drops = self._bytes, self._drops + 1
            log = self._drop_logged_at is None or now - self._drop_logged_at >= DROP_LOG_INTERVAL_S
            if log:
                drops, self._drops, self._drop_logged_at = self._drops, 0, now
        if self._on_drop is not None:
            self._on_drop()
        if log:
            logger.warning(
                "dropped %d message(s) at QoS 0 (the last on %r, %d bytes): the ingest holds %d bytes unstored, "
                "more than its bound of %d for QoS 0 (seals publish at QoS 1)",
                drops,
                topic[:200],
                size,
                held,
                self._qos0_bytes,
            )
        return None

    def stored(self, messages: Sequence[Received], *, works: bool = True) -> tuple[list[float], float | None]:
        """``messages`` (each one :meth:`received` returned the time of) are stored: how long each waited since, and
        since when storing had failed (None: it had not); it works now (``works=False``: these were stored before it
        failed again)."""
        unlogged, held = 0, self._held
        with self._lock:
            now = self._clock()
            for item in messages:
                if (same := held.pop(item.at, 0)) > 1:  # (never 0: every message stored was received)
                    held[item.at] = same - 1
                self._bytes -= item.footprint
            self._count -= len(messages)
            self._tidy()
            self._room.notify_all()
            failing_since = self._failing_since
            if works:
                self._failing_since = None
            if not self._count:  # the run of drops, if any, is over: the next one is logged at once
                unlogged, self._drops, self._drop_logged_at = self._drops, 0, None
        if unlogged:
            logger.warning("dropped %d more message(s) at QoS 0 before the ingest caught up", unlogged)
        return [now - item.at for item in messages], failing_since

    def _tidy(self) -> None:
        """Take the times no longer held off the heap's top, and rebuild it once they are most of it (under the
        lock): its top is the oldest time held again."""
        times, held = self._times, self._held
        while times and times[0] not in held:
            heapq.heappop(times)
        if len(times) > 2 * len(held) + 64:
            self._times = list(held)
            heapq.heapify(self._times)

    def failing(self) -> None:
        """Storing failed (the database does not answer): the batch is retried."""
        with self._lock:
            if self._failing_since is None:
                self._failing_since = self._clock()

    def progress(self) -> IngestProgress:
        with self._lock:
            oldest = self._clock() - self._times[0] if self._count else 0.0
            return IngestProgress(self._count, oldest, self._failing_since, self._bytes)
