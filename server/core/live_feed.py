"""The court's live feed: what each court process commits, shown live on the pages every other process serves.

Every process that commits something a screen shows (``seal-server run``, each ``seal-server ingest`` worker, on any
machine) publishes its :class:`~server.core.live.Change`\\ s on one topic of the court's own broker
(:data:`~server.core.live_wire.FEED_TOPIC`), readable and writable by the court's account only; every process that
serves pages subscribes to it and relays what the others sent to its :class:`~server.core.live.LiveHub`. The broker
was chosen because every court process already holds a connection to it, whatever the database (SQLite or
PostgreSQL) and on whichever machine; PostgreSQL's LISTEN/NOTIFY would leave SQLite courts without it, and polling
the database would cost a query per process and interval, and a delay.

Sending (:meth:`LiveFeed.send`: any thread, never blocking): changes are gathered, one per kind and seal or case,
and the feed's own thread publishes what has gathered as one message (QoS 1): an ingest batch of 500 events becomes
one message, and batches committed while one is being sent become the next. While the broker is away the changes
wait (at most :data:`MAX_WAITING`; beyond, they are dropped and a message number skipped, which the receivers see:
a message with no changes follows if nothing else does). A process that exits next (a command of ``seal-server``,
:mod:`server.cli_feed`) calls :meth:`LiveFeed.flush` first: it waits until the broker acknowledged what was sent, and
says at once when that cannot be (the broker unreachable or refusing).

Receiving: the feed cannot know what it missed while its connection was down, so when the connection drops, and when
the subscription is granted again, it calls :meth:`LiveHub.gap`: every open stream says "gap" and its page reloads.
A message whose number skips one of its sender's (lost, or dropped by its sender) does the same, and so does the first
message heard from a sender if it is not that sender's first (numbered above 1): the messages before it were sent
before this subscription, or since and lost, and nothing in them tells which. Reloading is always safe; it costs one
reload more per sender still running after each subscription (at its next message). A malformed message is logged,
counted and ignored (if it was a sender's, its next message shows the hole). ``on_received`` is told the changes of
every message relayed (the app wakes its removal settler when another process stored a seal's answer), ``on_gap``
of every gap (the settler is woken then too: the missed changes may have been such answers).
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from server.config import MqttSettings
from server.core.live import Change, LiveHub
from server.core.live_wire import FEED_TOPIC, MAX_CHANGES, MalformedFeedMessage, decode, encode
from server.core.metrics import IngestMetrics
from server.core.mqtt import RefusedLog, connect_in_background, make_client, publish_problem

logger = logging.getLogger(__name__)

#: At most this many changes wait for the broker; beyond, they are dropped (the receivers' pages reload).
MAX_WAITING = 10_000
#: The last message number of at most this many senders is remembered (each process start is a new sender).
KNOWN_SENDERS = 1024
#: How long :meth:`LiveFeed.stop` waits for what is waiting to be handed to the broker.
STOP_FLUSH_S = 2.0
#: A repeated warning (dropped changes, malformed messages) is logged at most this often.
WARN_EVERY_S = 60.0
#: After a message number was skipped, an empty message follows (at most this often) if nothing else does, so that
#: the receivers see the hole now rather than whenever this process next has changes to send.
OWED_RETRY_S = 1.0


class LiveFeed:
    """This process's end of the court's live feed: :meth:`send` (always) and, given a ``hub``, what the court's
    other processes send relayed to it, and then to ``on_received`` (on paho's thread: it must not block); a gap
    to ``on_gap`` (the same).
    :meth:`start` / :meth:`stop`."""

    def __init__(
        self,
        settings: MqttSettings,
        *,
        metrics: IngestMetrics,
        hub: LiveHub | None = None,
        role: str = "live",
        on_received: Callable[[list[Change]], None] | None = None,
        on_gap: Callable[[], None] | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.hub = hub
        self.on_received = on_received
        self.on_gap = on_gap
        #: How many times the open pages were told "gap" (reload) since the start, the first subscription included.
        self.gaps = 0
        self.sender = secrets.token_hex(8)  # a new sender at each start: its numbers begin at 1 again
        self._role = f"{role}-{self.sender}"  # the client id: a clean session, unique even if two configs are alike
        self._cond = threading.Condition()
        self._waiting: dict[Change, None] = {}  # ordered, without repeats
        self._seq = 0
        self._owed = False  # a number was skipped since the last message handed to paho: the receivers must see it
        self._owed_retry = 0.0  # (monotonic) not before then: an empty message that fails is not sent in a loop
        self._connected = False
        self._stopping = False
        self._subscribed = threading.Event()
        self._senders: OrderedDict[str, int] = OrderedDict()  # sender → its last number seen (paho's thread)
        self._warned: dict[str, float] = {}
        self._client: mqtt.Client | None = None
        self._last: mqtt.MQTTMessageInfo | None = None  # the last message handed to paho
        self._handed = 0  # the number of the last message the feed's thread was done handing to paho (or not)
        self._unreachable = False  # the last attempt to connect failed (cannot reach, or refused): see flush()
        self._refusals = 0  # messages the broker refused (PUBACK with a failure): see flush()
        self._thread: threading.Thread | None = None
        self._refused = RefusedLog(settings, "live feed")

    @property
    def connected(self) -> bool:
        with self._cond:
            return self._connected

    @property
    def subscribed(self) -> bool:
        """The broker granted the subscription and the connection holds (only with a hub): others' changes arrive."""
        return self._subscribed.is_set()

    def wait_subscribed(self, timeout: float) -> bool:
        """Wait until the broker granted the subscription (only with a hub): from then, others' changes arrive."""
        return self._subscribed.wait(timeout)

    def start(self) -> None:
        """Connect in the background; raise ``ConfigError`` / ``BrokerUnavailable`` as the ingest does."""
        client = make_client(self.settings, role=self._role)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        client.on_publish = self._on_publish
        client.on_connect_fail = self._connect_failed(client.on_connect_fail)
        self._client = client
        self._thread = threading.Thread(target=self._run, name="live-feed", daemon=True)
        self._thread.start()
        connect_in_background(client, self.settings, persistent=False)

    def stop(self) -> None:
        """Hand what is waiting to the broker (for :data:`STOP_FLUSH_S` at most), then disconnect."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        began = time.monotonic()
        if self._thread is not None:
            self._thread.join(STOP_FLUSH_S)
        with self._cond:
            left, last = len(self._waiting), self._last
        if left:
            self.metrics.count_live_feed("unsent")
            logger.warning("live feed: %d changes could not be sent before stopping (no broker)", left)
        if last is not None and self.connected:  # the broker's PUBACK, so that the DISCONNECT does not overtake it
            last.wait_for_publish(max(0.1, STOP_FLUSH_S - (time.monotonic() - began)))
        if self._client is not None:
            self._client.disconnect()
            self._client.loop_stop()
        self.metrics.set_live_feed_connected(False)

    def flush(self, timeout: float) -> bool:
        """Wait until the broker acknowledged every change sent so far (at most ``timeout`` seconds): ``True`` then.
        ``False`` at once when that cannot be — the last attempt to connect failed (the broker cannot be reached, or
        refused the connection), changes were dropped or a message not sent, the broker refused a message — and when
        ``timeout`` passed. For a process that exits next: :meth:`stop` waits for a connection no longer."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._waiting or self._handed < self._seq:
                left = deadline - time.monotonic()
                if self._owed or (self._unreachable and not self._connected) or left <= 0:
                    return False
                self._cond.wait(min(left, OWED_RETRY_S))
            if self._owed:
                return False
            last = self._last
        if last is not None:
            try:
                last.wait_for_publish(max(0.0, deadline - time.monotonic()))
            except (ValueError, RuntimeError):  # paho did not send it after all
                return False
            if not last.is_published():
                return False
        return self._refusals == 0  # (paho calls on_publish before it marks the message published)

    def send(self, changes: Iterable[Change]) -> None:
        """Publish ``changes`` (committed) to the court's other processes, soon; never blocks."""
        with self._cond:
            for change in changes:
                self._waiting[change] = None
            if len(self._waiting) > MAX_WAITING:
                dropped = len(self._waiting)
                self._waiting.clear()
                self._seq += 1  # a number skipped: the receivers' pages reload
                self._owed = True
                self.metrics.count_live_feed("unsent")
                self._warn("dropped", "live feed: %d changes waited for the broker and were dropped", dropped)
            self._cond.notify()

    # -- sending, on the feed's thread ----------------------------------------------------------------------------

    def _due(self) -> bool:
        """Something to send now (called with the condition's lock held): changes, or a skipped number to show."""
        owed = self._owed and time.monotonic() >= self._owed_retry
        return self._connected and (bool(self._waiting) or owed)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not (self._stopping or self._due()):
                    self._cond.wait(OWED_RETRY_S if self._owed else None)  # (owed: due again within a second)
                if not self._due():
                    return  # stopping, with nothing that can be sent
                changes, self._waiting = list(self._waiting), {}
                self._owed, self._owed_retry = False, time.monotonic() + OWED_RETRY_S
                numbered = []
                for start in range(0, max(len(changes), 1), MAX_CHANGES):  # no changes: an empty message
                    self._seq += 1
                    numbered.append((self._seq, changes[start : start + MAX_CHANGES]))
            for seq, part in numbered:
                self._publish(seq, part)

    def _publish(self, seq: int, changes: list[Change]) -> None:
        assert self._client is not None
        try:
            info = self._client.publish(FEED_TOPIC, encode(self.sender, seq, changes), qos=1)
        except (ValueError, RuntimeError) as exc:  # paho refuses the message itself
            problem: str | None = str(exc)
        else:
            problem = publish_problem(info)
        if problem is None:
            with self._cond:
                self._last, self._handed = info, seq
                self._cond.notify_all()
            self.metrics.count_live_feed("sent")
            return
        self.metrics.count_live_feed("unsent")  # its number is skipped for the receivers: their pages reload
        with self._cond:
            self._owed, self._handed = True, seq
            self._cond.notify_all()
        self._warn("unsent", "live feed: message %d not sent (%s): the other processes' pages reload", seq, problem)

    # -- paho's callbacks, on its network thread ------------------------------------------------------------------

    def _connect_failed(self, log: Callable[[mqtt.Client, Any], None] | None) -> Callable[[mqtt.Client, Any], None]:
        """paho's ``on_connect_fail``: ``log`` (:func:`~server.core.mqtt.make_client`'s), and :meth:`flush` told."""

        def failed(client: mqtt.Client, userdata: Any) -> None:
            with self._cond:
                self._unreachable = True
                self._cond.notify_all()
            if log is not None:
                log(client, userdata)

        return failed

    def _on_connect(self, client: mqtt.Client, _u: Any, _f: Any, reason_code: ReasonCode, _p: Any) -> None:
        if reason_code.is_failure:
            with self._cond:
                self._unreachable = True
                self._cond.notify_all()
            self._refused.refused(reason_code)
            return
        self._refused.accepted()
        logger.info("live feed connected to the broker at %s:%d", self.settings.host, self.settings.port)
        with self._cond:
            self._connected, self._unreachable = True, False
            self._cond.notify_all()
        self.metrics.set_live_feed_connected(True)
        if self.hub is not None:
            client.subscribe(FEED_TOPIC, options=SubscribeOptions(qos=1, noLocal=True))

    def _on_disconnect(self, _c: mqtt.Client, _u: Any, _f: Any, reason_code: ReasonCode, _p: Any) -> None:
        with self._cond:
            was, self._connected = self._connected, False
            stopping = self._stopping
        self._subscribed.clear()
        self.metrics.set_live_feed_connected(False)
        if was and not stopping:
            logger.warning("live feed: the connection to the broker was lost (%s); reconnecting", reason_code)
            self._gap("disconnected")

    def _on_subscribe(self, _c: mqtt.Client, _u: Any, _mid: int, reason_codes: list[ReasonCode], _p: Any) -> None:
        if any(code.is_failure for code in reason_codes):
            logger.error(
                "live feed: the broker refused the subscription to %s (%s): the pages of this process do not show "
                "what the court's other processes commit. Regenerate the broker's ACL: seal-server broker write-files",
                FEED_TOPIC,
                ", ".join(str(code) for code in reason_codes),
            )
            return
        self._senders.clear()  # what was missed while away is unknown: numbers are taken afresh
        self._subscribed.set()
        self._gap("subscribed")

    def _on_publish(self, _c: mqtt.Client, _u: Any, mid: int, reason_code: ReasonCode, _p: Any) -> None:
        if reason_code.is_failure:  # e.g. "Not authorized": the ACL lacks the feed's topic
            self._refusals += 1
            self.metrics.count_live_feed("unsent")
            self._warn(
                "refused",
                "live feed: the broker refused a message (%s, id %d): the other processes' pages do not show this "
                "one's changes. Regenerate the broker's ACL: seal-server broker write-files",
                reason_code,
                mid,
                error=True,
            )

    def _on_message(self, _c: mqtt.Client, _u: Any, message: mqtt.MQTTMessage) -> None:
        try:
            self._received(bytes(message.payload))
        except Exception:  # paho's thread must go on whatever a message holds
            logger.exception("live feed: a message could not be handled")

    def _received(self, payload: bytes) -> None:
        try:
            decoded = decode(payload)
        except MalformedFeedMessage as exc:
            self.metrics.count_live_feed("malformed")
            self._warn("malformed", "live feed: malformed message ignored (%s)", exc)
            return
        if decoded.sender == self.sender:  # its own (should the broker not honour noLocal)
            return
        assert self.hub is not None  # only a feed with a hub subscribes
        last = self._senders.get(decoded.sender)
        if last is not None and decoded.seq <= last:
            self.metrics.count_live_feed("duplicate")
            return
        self.metrics.count_live_feed("received")
        self._senders[decoded.sender] = decoded.seq
        self._senders.move_to_end(decoded.sender)
        while len(self._senders) > KNOWN_SENDERS:
            self._senders.popitem(last=False)
        if last is None and decoded.seq > 1:
            logger.info(
                "live feed: %s first heard at its message %d; the pages reload (what it sent before is unknown)",
                decoded.sender,
                decoded.seq,
            )
            self._gap("unknown_sender")
        elif last is not None and decoded.seq > last + 1:
            logger.warning(
                "live feed: messages %d to %d of %s were missed; the pages reload",
                last + 1,
                decoded.seq - 1,
                decoded.sender,
            )
            self._gap("hole")
        changes = decoded.live_changes
        self.hub.relay(changes)
        if self.on_received is not None:
            self.on_received(changes)

    def _gap(self, reason: str) -> None:
        if self.hub is not None:
            self.gaps += 1
            self.metrics.count_live_gap(reason)
            self.hub.gap("feed")
        if self.on_gap is not None:  # what was missed may be anything: whatever on_received would have done
            self.on_gap()

    def _warn(self, key: str, text: str, *args: object, error: bool = False) -> None:
        """Log ``text`` at most every :data:`WARN_EVERY_S` per ``key`` (the counters count every one)."""
        now = time.monotonic()
        if now - self._warned.get(key, -WARN_EVERY_S) < WARN_EVERY_S:
            return
        self._warned[key] = now
        logger.log(logging.ERROR if error else logging.WARNING, text, *args)
