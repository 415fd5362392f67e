"""The MQTT edge of the ingest: paho receives, a worker thread stores in batches, then acknowledges.

- MQTT v5, persistent session (``clean_start=False``, ``SessionExpiryInterval``) under a stable client id: the broker
  keeps the subscriptions and queues messages while the server is down.
- ``manual_ack=True``: a QoS 1 message is acknowledged only after :meth:`Ingestor.ingest` has committed its row.
  A crash in between means the broker delivers it again, and the copy is a no-op duplicate.
- paho's network thread only enqueues; one worker drains up to ``batch_size`` messages (holding at most about
  :data:`~.backlog.BATCH_BYTES`) per transaction (the broker's bound on messages in flight to us bounds the queue),
  taken from the seals' lanes in turn (:mod:`.lanes`): one seal's backlog holds up no other seal's messages here.
- Acknowledgements carry the packet id of one connection: messages received before a reconnect are stored but not
  acknowledged on the new connection (the broker redelivers them: duplicates). A batch's are one write (``ack_many``).
- With ``[mqtt] shared_group``, the subscriptions are MQTT v5 shared ones (``$share/<group>-<secret>/…``, the
  secret derived from the password, :func:`~seal_protocol.transport.mqtt_shared_group`: a seal that joined a group
  it can name would take a share of every seal's messages and drop it, its ACL refusing it each one): several ingest
  processes, each under its own client id (``role``) and persistent session, split the stream. Inserts are
  idempotent on (``device_id``, ``seq``), the chain state locked per seal: an event beyond a gap is stored at once,
  and its ``missing_events`` alarm waits ``gap_wait_s`` for another worker to store the predecessor (:mod:`.gap_wait`).
- One message cannot hold up the others: :class:`Ingestor` quarantines a message whose handling fails. Only a
  database that does not answer makes a batch wait, retried with back-off while :meth:`MqttIngest.progress` (read by
  ``/api/health`` and ``/metrics``) says so and how old the oldest message received but not yet stored is.
- The broker bounds the messages at QoS 1 in flight to us (their bytes counted, :meth:`MqttIngest.progress`); those
  at QoS 0, never acknowledged, are dropped (counted, logged) past a bound of bytes held unstored (:mod:`.backlog`).
- After a batch is committed and acknowledged, each seal gets a receipt signed by the court's command key naming
  what the court now holds (:mod:`server.ingest.receipts`), QoS 1: only that lets a seal delete from its outbox.
  Receipts are signed and sent on a thread of their own. Without the key no receipt is sent (a warning at start says
  so) and seals keep and re-send their events.
- A message that comes retained on a seal's ``event`` or ``snapshot`` topic has its retained copy cleared at once
  (:mod:`.retained`): a seal may retain only its status.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from datetime import UTC, datetime
from typing import Any, cast

import paho.mqtt.client as mqtt
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from seal_protocol import MessageKind, subscription_all
from server.commands.keys import CourtKey
from server.config import MqttSettings
from server.core.mqtt import RefusedLog, TolerantClient, broker_group, client_name, connect_in_background, make_client
from server.core.progress import IngestProgress
from server.errors import StorageUnavailable
from server.ingest.backlog import BATCH_BYTES, QOS0_BACKLOG_BYTES, Backlog, Received
from server.ingest.checks import Opening
from server.ingest.ingestor import Ingestor
from server.ingest.lanes import FairQueue, is_urgent, lane_of
from server.ingest.marker import Marker
from server.ingest.receipts import Committed, receipt_key, receipts_for, send_receipts, take_waiting
from server.ingest.results import IngestResult, Message
from server.ingest.retained import RetainedClearer, subscribe_options
from server.ingest.verifier import AHEAD_AT

logger = logging.getLogger(__name__)

SUBSCRIBED_KINDS = (MessageKind.EVENT, MessageKind.STATUS, MessageKind.SNAPSHOT)
#: After a storage failure, wait this long before retrying the batch (doubling up to the maximum).
RETRY_MIN_S = 0.5
RETRY_MAX_S = 5.0  # a retry fails fast while the database is down, and one that is back is used within 5 s


class MqttIngest:
    """Subscribes to every seal's outgoing topics and feeds an :class:`Ingestor`; receipts what it committed,
    signed with ``court_key``. ``start()`` / ``stop()``. ``qos0_backlog_bytes``, ``batch_bytes``: :mod:`.backlog`."""

    def __init__(
        self,
        settings: MqttSettings,
        ingestor: Ingestor,
        *,
        court_key: CourtKey | None = None,
        role: str = "",
        qos0_backlog_bytes: int = QOS0_BACKLOG_BYTES,
        batch_bytes: int = BATCH_BYTES,
    ) -> None:
        self.settings, self._batch_bytes = settings, batch_bytes
        self._role = role  # tells the workers of a shared group apart (each has its own persistent session)
        self.ingestor, self._court_key = ingestor, court_key
        # one lane per seal account, taken in turn (:mod:`.lanes`): one seal's backlog holds up no other seal here
        self._queue: FairQueue[Received] = FairQueue(
            lambda item: lane_of(item.message.topic, self.marker.topic), lambda item: item.urgent
        )
        self._stopping, self._connected = threading.Event(), threading.Event()
        self._backlog = Backlog(
            qos0_bytes=qos0_backlog_bytes, on_drop=ingestor.metrics.count_dropped, stopping=self._stopping
        )
        self._subscribed = threading.Event()  # the broker granted our subscriptions on this connection
        self._generation = 0
        self._lock = threading.Lock()
        self._client: TolerantClient | None = None
        self._group: str | None = None  # the broker's name of the shared group (secret), set by start()
        self._worker: threading.Thread | None = None
        # Committed batches whose receipts are still to be signed and sent: a thread of their own, so that signing a
        # receipt per seal does not hold up the next batch's commit (None: stop).
        self._receipts: queue.Queue[Committed | None] = queue.Queue()
        self._receipter: threading.Thread | None = None
        self._refused = RefusedLog(settings, "ingest")
        self._retained = RetainedClearer(ingestor.metrics, lambda: self._client)
        self.marker = Marker(  # how far this worker has caught up with the broker: server.marks.marks
            client_name(settings, role),
            ingestor.session_factory,
            interval_s=settings.mark_interval_s,
            publish=lambda topic, payload: self._client and self._client.publish(topic, payload, qos=1),
            may_publish=self._subscribed.is_set,
        )

    @property
    def connected(self) -> bool:
        """True while the broker has accepted our connection (a CONNACK with a success reason code, nothing less)."""
        return self._connected.is_set()

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    def wait_subscribed(self, timeout: float) -> bool:
        """Wait until the broker has granted the subscriptions (a shared group's member gets its share from then)."""
        return self._subscribed.wait(timeout)

    @property
    def receipts_enabled(self) -> bool:
        """True when the court's command key is there to sign receipts; without it seals cannot empty their
        outboxes (and the health check says degraded)."""
        return receipt_key(self._court_key) is not None

    def progress(self) -> IngestProgress:
        return self._backlog.progress()

    def start(self) -> None:
        """Connect in the background and start the worker; raise ``ConfigError`` / :class:`BrokerUnavailable`."""
        if self._client is not None:
            return
        settings = self.settings
        client = make_client(settings, role=self._role, manual_ack=True)
        client.on_dropped_properties = self.ingestor.metrics.count_properties_dropped
        self._group = broker_group(settings)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_plain_publish = self._received
        client.on_subscribe = self._on_subscribe
        client.on_unsubscribe = self._on_unsubscribe
        client.on_publish = self._retained.published
        if receipt_key(self._court_key) is None:
            logger.warning(
                "no court command key ([commands] signing_key_file): no receipts are sent, so seals keep every event "
                "and send it again"
            )
        self._stopping.clear()
        self._client = client
        self._worker = threading.Thread(target=self._run_worker, name="mqtt-ingest-worker", daemon=True)
        self._worker.start()
        self._receipter = threading.Thread(target=self._run_receipts, name="mqtt-ingest-receipts", daemon=True)
        self._receipter.start()
        self.marker.start()
        connect_in_background(client, settings, persistent=True)
        logger.info(
            "MQTT ingest connecting to %s:%d as %s (client id %s-…)",
            settings.host,
            settings.port,
            settings.username,
            client_name(settings, self._role),
        )

    def stop(self, timeout: float = 10.0) -> None:
        """Finish the batch in hand, then disconnect. Unacknowledged messages stay with the broker's session."""
        client = self._client
        if client is None:
            return
        self._stopping.set()
        self._queue.wake()
        self.marker.stop()
        if self._worker is not None:
            self._worker.join(timeout)
            if self._worker.is_alive():
                logger.error("ingest worker did not stop within %.1f s", timeout)
            self._worker = None
        self.ingestor.close()  # its verifier process ends now, whatever the worker does (it checks its batch itself)
        if self._receipter is not None:  # the receipts of what was committed go out before the disconnect
            self._receipts.put(None)
            self._receipter.join(timeout)
            self._receipter = None
        self._client = None
        client.disconnect()  # queued after the last acknowledgements, so they are sent first
        client.loop_stop()
        self._connected.clear()
        logger.info("MQTT ingest stopped")

    # -- paho callbacks (paho's network thread) --------------------------------------------------------------------

    def _on_connect(
        self, client: mqtt.Client, _userdata: Any, flags: Any, reason_code: ReasonCode, _props: Any
    ) -> None:
        if reason_code.is_failure:
            self._connected.clear()
            self._refused.refused(reason_code)
            return
        self._refused.accepted()
        with self._lock:
            self._generation += 1
        self._connected.set()
        logger.info("connected to the broker (session present: %s)", flags.session_present)
        # Re-subscribing is harmless when the session survived; retained statuses are sent only for new ones, any
        # retained event or snapshot at every subscription, to be cleared (.retained).
        seals = [(self._filter(kind), subscribe_options(kind)) for kind in SUBSCRIBED_KINDS]
        client.subscribe([*seals, (self.marker.topic, SubscribeOptions(qos=1))])  # its own markers: not shared
        if flags.session_present and (label := self.settings.shared_group) is not None:
            # A session kept from before shared_group was set still holds the plain subscriptions (every message on
            # top of its share), or from before the group's name carried its secret, the group a seal can join.
            kept = [subscription_all(kind) for kind in SUBSCRIBED_KINDS]
            client.unsubscribe([*kept, *(f"$share/{label}/{topic}" for topic in kept)])

    def _filter(self, kind: MessageKind) -> str:
        """Every seal's ``kind`` topic; within the shared group ``[mqtt] shared_group`` if there is one."""
        group = self._group
        return subscription_all(kind) if group is None else f"$share/{group}/{subscription_all(kind)}"

    def _on_subscribe(self, _client: mqtt.Client, _userdata: Any, _mid: int, codes: list[ReasonCode], _p: Any) -> None:
        refused = False
        for topic, code in zip([*map(subscription_all, SUBSCRIBED_KINDS), self.marker.topic], codes, strict=False):
            if code.is_failure:  # the markers' alone: no mark is recorded (server.ingest.marker), the seals' still come
                refused = refused or topic != self.marker.topic
                logger.error("subscription to %s refused: %s", topic, code)  # the group's name unlogged
        if not refused:
            self._subscribed.set()
            self.marker.wake()

    def _on_unsubscribe(
        self, _client: mqtt.Client, _userdata: Any, _mid: int, codes: list[ReasonCode], _p: Any
    ) -> None:
        if any(code.value == 0 for code in codes):  # the others say "no subscription found": nothing was left over
            logger.info(
                "subscriptions kept in the session from an older setting (plain, or a guessable group): removed"
            )

    def _on_disconnect(
        self, _client: mqtt.Client, _userdata: Any, _flags: Any, reason_code: ReasonCode, _props: Any
    ) -> None:
        was_connected = self._connected.is_set()
        self._connected.clear()
        self._subscribed.clear()
        with self._lock:
            self._generation += 1  # packet ids of the lost connection must not be acknowledged any more
        if was_connected and not self._stopping.is_set():
            logger.warning("disconnected from the broker: %s; reconnecting", reason_code)

    def _on_message(self, _client: mqtt.Client, _userdata: Any, msg: mqtt.MQTTMessage) -> None:
        self._received(msg._topic, bytes(msg.payload), msg.qos, msg.mid, msg.retain)

    def _received(self, raw_topic: bytes, payload: bytes, qos: int, mid: int, retain: bool) -> None:
        """A PUBLISH from the broker (paho's thread): queued for the worker. ``TolerantClient.on_plain_publish``."""
        received_at = datetime.now(UTC)
        topic = raw_topic.decode("utf-8", errors="replace")  # (paho's ``topic`` raises on invalid UTF-8)
        if retain and self._retained.received(topic, len(payload)):  # a deletion: nothing to store (.retained)
            if qos and (client := self._client) is not None:  # (paho's thread: this connection's packet id)
                client.ack_many([(mid, qos)])
            return
        marker = topic == self.marker.topic  # (not held: passed, never stored)
        if (at := time.monotonic() if marker else self._backlog.received(qos, len(payload), topic)) is None:
            return  # dropped (.backlog)
        with self._lock:
            generation = self._generation
        urgent = is_urgent(topic, payload)
        self._queue.put(Received(generation, mid, qos, Message(topic, payload, received_at), at, urgent))

    # -- worker ----------------------------------------------------------------------------------------------------

    def _run_worker(self) -> None:
        ahead: tuple[list[Received], Opening | None, list[Received]] | None = None  # next batch (events opened)
        taken_at = 0.0  # when the batch in hand was taken (monotonic)
        while not self._stopping.is_set():
            if ahead is None:
                batch, marks = self._split(self._next_batch())
                if not batch and not marks:
                    continue
                opening, taken_at = None, time.monotonic()
            else:
                (batch, opening, marks), ahead = ahead, None
            self.ingestor.verifier.expect(len(batch))
            backlog = self._queue.qsize() >= min(self.settings.batch_size, AHEAD_AT)
            if batch and backlog and self.ingestor.verifier.shares():
                # A backlog forms: the verifier process opens the next batch while this one is stored, one batch at a
                # time (this one's answers first); the next is taken a linger after this one, or when a batch waits.
                if opening is None:
                    opening = self.ingestor.opening([item.message for item in batch])
                if opening is not None:
                    opening.collect()
                if self.ingestor.verifier.shares():  # still: else the next batch waits for its turn
                    wait = taken_at + self.settings.batch_linger_ms / 1000 - time.monotonic()
                    if wait > 0 and self._queue.qsize() < self.settings.batch_size:
                        self._queue.linger(wait)  # (a batch waits, or an intrusion: taken at once)
                    following, later = self._split(self._take(self.settings.batch_size))
                    taken_at = time.monotonic()
                    opened = self.ingestor.opening([m.message for m in following], ahead=True) if following else None
                    ahead = following, opened, later  # (only markers: nothing to open)
            if (not batch or self._store_and_ack(batch, opening)) and marks:
                self._pass(marks)  # what came before them is stored
        if ahead is not None and ahead[1] is not None:
            ahead[1].abandon()  # the batch stays unacknowledged: the broker sends it again

    def _next_batch(self) -> list[Received]:
        try:
            first = self._queue.get(timeout=0.2)
        except queue.Empty:
            return []
        linger = self.settings.batch_linger_ms / 1000
        if linger > 0 and not first.urgent and self._queue.qsize() + 1 < self.settings.batch_size:
            self._queue.linger(linger)  # cut short by an intrusion or a tamper report (.lanes), or by stop()
        return [first, *self._take(self.settings.batch_size - 1, first.footprint)]

    def _take(self, most: int, held: int = 0) -> list[Received]:
        """Up to ``most`` waiting messages, not waiting; none once they and ``held`` bytes hold ``batch_bytes``."""
        taken: list[Received] = []
        while len(taken) < most and held < self._batch_bytes:
            try:
                taken.append(item := self._queue.get_nowait())
            except queue.Empty:
                break
            held += item.footprint
        return taken

    def _split(self, items: list[Received]) -> tuple[list[Received], list[Received]]:  # (to store, markers)
        return self.marker.split(items, lambda item: item.message.topic)

    def _store_and_ack(self, batch: list[Received], opening: Opening | None = None) -> bool:
        delay = RETRY_MIN_S
        while True:
            try:
                results = self.ingestor.ingest([item.message for item in batch], opening)
                break
            except StorageUnavailable as exc:
                logger.error("cannot store %d messages, retrying in %.1f s: %s", len(batch), delay, exc)
                if exc.stored:  # the first ones were committed before the database went away: done, not tried again
                    done = len(exc.stored)
                    self._settle(batch[:done], cast(list[IngestResult], exc.stored), works=False)
                    batch = batch[done:]
            except Exception:  # a defect of the ingest itself: nothing could be stored, so treat it as storage
                logger.exception("unexpected error storing %d messages; retrying in %.1f s", len(batch), delay)
            opening = None  # taken by the attempt: a new one prepares the batch again
            self._storage_failed()
            if self._stopping.wait(delay):
                logger.warning("stopping with %d messages unstored; the broker will deliver them again", len(batch))
                return False
            delay = min(delay * 2, RETRY_MAX_S)
        self._settle(batch, results)
        return True

    def _settle(self, batch: list[Received], results: list[IngestResult], *, works: bool = True) -> None:
        """``batch``'s outcomes are committed: acknowledge it, receipt it (``works=False``: these were committed
        before the database went away, the rest of their batch waits)."""
        waited, failing_since = self._backlog.stored(batch, works=works)  # each since it was received
        for latency in waited:
            self.ingestor.metrics.commit_latency.observe(latency)
        if failing_since is not None and works:
            logger.warning("storing works again after %.1f s", time.monotonic() - failing_since)
        self._ack(batch)
        self._receipts.put(([item.message for item in batch], results))

    def _pass(self, marks: list[Received]) -> None:
        """Every message received before ``marks`` is committed: record them, and acknowledge."""
        if marks:
            self.marker.passed([item.message.payload for item in marks])
            self._ack(marks)

    def _storage_failed(self) -> None:
        self.ingestor.metrics.count_storage_retry()
        self._backlog.failing()

    def _ack(self, batch: list[Received]) -> None:
        client = self._client
        # Under the lock that a disconnection takes to end the generation (paho's thread, before it reconnects and
        # empties its queue of packets to send): no acknowledgement of this connection's packet ids can be queued
        # for the next connection, where they would name other messages. (paho's queueing takes none of its locks.)
        with self._lock:
            current = [(item.mid, item.qos) for item in batch if item.qos and item.generation == self._generation]
            if client is not None:
                client.ack_many(current)
        if stale := sum(1 for item in batch if item.qos) - (len(current) if client is not None else 0):
            logger.info("%d stored messages came from an earlier connection; not acknowledging them", stale)

    def _run_receipts(self) -> None:
        more = True
        while more and (work := self._receipts.get()) is not None:
            messages, results, more = take_waiting(work, self._receipts)
            try:
                self._send_receipts(messages, results)
            except Exception:  # a defect here must not stop the receipts of later batches
                logger.exception("receipts of %d messages not sent", len(messages))

    def _send_receipts(self, messages: list[Message], results: list[IngestResult]) -> None:
        key, client = receipt_key(self._court_key), self._client
        if key is not None and client is not None:
            send_receipts(client, receipts_for(messages, results, key=key))
