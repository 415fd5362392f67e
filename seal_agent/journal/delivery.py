"""Delivery: the seal's couriers, and the one place their acknowledgements arrive.

:class:`Delivery` owns the two :class:`~seal_agent.journal.courier.Courier`\\ s (events, snapshots), the way a gpiozero
composite device owns its children: it hooks each to the queue it drains (the recorder's commits, the spool's new
snapshots) and binds itself to the publisher, so the broker's PUBACKs, connection changes and the court's receipts
come straight here and never pass through the seal's behaviour.

Two acknowledgements, two meanings:

* The broker's PUBACK (success code) means the broker took the message. The item is marked broker-acknowledged and
  *stays* in its queue: a broker that loses its store, or drops a message for a slow subscriber, would lose it.
* The court's receipt names the SHA-256 of the bytes the court committed. It is verified here against the court key
  the seal pins and routed to both couriers; only then does an item leave its queue
  (:meth:`~seal_agent.journal.courier.DeliveryQueue.court_receipted`). A refused receipt is logged and changes
  nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from seal_agent.interfaces import Clock, Lane, Publisher
from seal_agent.journal.courier import RECEIPT_TIMEOUT_MAX_S, RECEIPT_TIMEOUT_S, Courier
from seal_agent.journal.outbox import SnapshotItem, StoredEvent
from seal_agent.journal.recorder import EventRecorder
from seal_agent.journal.snapshot_spool import SnapshotSpool
from seal_protocol.receipts import ReceiptRefused, check_receipt
from seal_protocol.signing import VerifyKey

logger = logging.getLogger(__name__)

#: At most this many snapshots are handed to the publisher and not yet acknowledged by the broker.
SNAPSHOT_WINDOW = 4


class Delivery:
    """Sends what the journal holds and routes the acknowledgements: :meth:`start` before the first event is
    recorded, :meth:`stop` after the last.

    ``recorder``'s commits wake the event courier; ``snapshots`` (None: no camera) gets a snapshot courier woken by
    each queued snapshot. ``court_key`` verifies the receipts; ``delivery_window`` bounds the events in flight.
    """

    def __init__(
        self,
        publisher: Publisher,
        recorder: EventRecorder,
        *,
        court_key: VerifyKey,
        clock: Clock,
        snapshots: SnapshotSpool | None = None,
        delivery_window: int = 20,
        retry_s: float = 30.0,
        receipt_timeout_s: float = RECEIPT_TIMEOUT_S,
        receipt_timeout_max_s: float = RECEIPT_TIMEOUT_MAX_S,
    ) -> None:
        self._device_id = recorder.device_id
        self._court_key = court_key
        self._clock = clock
        connected = lambda: publisher.connected  # noqa: E731
        self.events: Courier[StoredEvent] = Courier(
            recorder.outbox, lambda e: publisher.publish_event(e.seq, e.data), clock,
            connected=connected, window=delivery_window, retry_s=retry_s,
            receipt_timeout_s=receipt_timeout_s, receipt_timeout_max_s=receipt_timeout_max_s,
        )  # fmt: skip
        recorder.on_committed = self.events.notify
        self.snapshots: Courier[SnapshotItem] | None = None
        if snapshots is not None:
            self.snapshots = Courier(
                snapshots, lambda s: publisher.publish_snapshot(s.key, s.sha, s.jpeg), clock,
                connected=connected, name="snapshots", window=SNAPSHOT_WINDOW, retry_s=retry_s,
                receipt_timeout_s=receipt_timeout_s, receipt_timeout_max_s=receipt_timeout_max_s,
            )  # fmt: skip
            snapshots.notify = self.snapshots.notify
        #: Called with the seq of each event the broker acknowledged (PUBACK with a success code), on the MQTT
        #: client's thread; the event stays in the outbox until the court's receipt. Return quickly; failures are
        #: logged and ignored.
        self.when_delivered: Callable[[int], None] | None = None
        publisher.bind_delivery(on_ack=self._on_ack, on_connection=self._on_connection, on_receipt=self._on_receipt)

    @property
    def couriers(self) -> list[Courier[Any]]:
        return [self.events] + ([self.snapshots] if self.snapshots is not None else [])

    def start(self) -> None:
        for courier in self.couriers:
            courier.start()

    def stop(self, drain_timeout: float = 2.0) -> None:
        """Give in-flight messages ``drain_timeout`` s to be receipted, then stop the couriers."""
        deadline = self._clock.monotonic() + drain_timeout
        for courier in self.couriers:
            left = deadline - self._clock.monotonic()
            if drain_timeout > 0 and not courier.wait_drained(max(0.0, left)):
                logger.info("stopping with %s still in the outbox; sent after restart", courier.name)
        for courier in self.couriers:
            courier.stop()

    # -- publisher callbacks (paho's thread) ------------------------------------------------------------------

    def _on_ack(self, lane: Lane, key: int, failure: str | None) -> None:
        courier = self.events if lane is Lane.EVENT else self.snapshots
        if courier is not None:
            courier.on_ack(key, failure)
        hook = self.when_delivered
        if hook is not None and lane is Lane.EVENT and failure is None:
            try:
                hook(key)
            except Exception:
                logger.exception("when_delivered handler failed")

    def _on_connection(self, connected: bool) -> None:
        for courier in self.couriers:
            courier.on_connection(connected)

    def _on_receipt(self, data: bytes) -> None:
        """A message on the seal's receipt topic: verified against the pinned court key, then routed to the couriers
        (each deletes what it names from its own queue). A refused receipt is logged and changes nothing."""
        try:
            receipt = check_receipt(data, device_id=self._device_id, court_key=self._court_key)
        except ReceiptRefused as refused:
            logger.warning("refused a court receipt (%d bytes): %s", len(data), refused)
            return
        logger.debug("court receipt of %s names %d message(s)", receipt.ts, len(receipt.committed))
        for courier in self.couriers:
            courier.on_receipt(receipt.committed)
