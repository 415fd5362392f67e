"""The MQTT side of the seal through paho-mqtt 2.x (MQTT v5): implements :class:`~seal_agent.interfaces.Publisher`.

* QoS 1 for events, persistent session (``clean_start=False`` plus ``SessionExpiryInterval`` in CONNECT, without
  which the session would die at disconnect), so paho re-sends unacknowledged events after a reconnect.
* Only a CONNACK whose reason code is not a failure counts as connected.
* Retained ``online`` status on every connect; retained ``offline`` as the Last Will and on a clean stop; none of
  them on a connection that has no stamp (:mod:`seal_agent.connection_stamps`; one not kept is held in memory).
  While the seal cannot store events, its ``online`` says so (:meth:`MqttPublisher.report_storage`), sent again
  with the same stamp. Events the session still owes go first: if any are awaiting PUBACK at CONNACK, ``online``
  follows the first PUBACK. Mosquitto 2.0 drops the connection right after refusing any publish, so a refused
  status sent first would hide every event's own verdict (and evidence matters more than presence).
* Reconnect back-off is exponential with jitter, drawn uniformly between ``reconnect_min_s`` (1 s) and a ceiling
  that doubles with each attempt up to ``reconnect_max_s`` (default 5 s): a broker that comes back is reached again
  within seconds, and the seals of a court do not all knock at once. paho's own ``reconnect_delay_set`` only
  doubles, so before each of paho's waits we set both its bounds to our drawn delay. The back-off is reset by the
  first accepted PUBACK, not by CONNACK: a broker that accepts the connection but refuses (and then drops) every
  publish must not be hammered once a second.
* A broker that cannot be reached (at start or later) is a WARNING naming its address and the reason (the socket
  error, e.g. "Connection refused"), never a traceback; a broker that refuses the connection (a CONNACK such as
  "Not authorized" for a wrong password) is an ERROR naming its address, the account and the reason. While either
  lasts for the same reason, the message is repeated once a minute and each attempt in between is logged at DEBUG,
  each with the delay actually used before the next attempt.
* Each event's PUBACK is reported with its ``seq`` (each snapshot's with its queue id); a PUBACK whose reason code
  is a failure (e.g. "Not authorized" from the broker's ACL) is reported as a failure. A PUBACK is only the
  broker's word: the seal deletes nothing on it (the court's receipt does that, :mod:`seal_agent.journal.courier`).
* The seal's ``cmd`` and ``receipt`` topics are subscribed at QoS 1 on every connect (the persistent session keeps
  the subscriptions too, but a broker that lost its state must not leave the seal deaf). A receipt is handed to
  ``on_receipt`` on paho's network thread and acknowledged when it returns, whatever it made of it: a receipt
  lost in a crash costs only a re-send, which the court receipts again. A command is handed to ``on_command`` on
  paho's network thread and acknowledged by hand (paho's ``manual_ack``): the broker gets the PUBACK only after
  ``on_command`` returned, i.e. after the seal has committed its answer. If it raises (the action failed, or the
  answer could not be committed, e.g. on a full disk), that command and every later one on the connection stay
  unacknowledged, and the connection is renewed after a back-off so that the broker delivers them again, in order
  (:class:`~seal_agent.mqtt_commands.CommandInbox`). A command is never consumed without an answer. A message
  delivered retained on ``cmd`` is no command (the court never retains one): acknowledged, answered by nothing.
"""

from __future__ import annotations

import logging
import random
import ssl
import threading
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from seal_agent import __version__
from seal_agent.connection_stamps import ConnectionStamps
from seal_agent.errors import ConfigError, PublishError
from seal_agent.interfaces import AckHandler, CommandHandler, ConnectionHandler, Lane, ReceiptHandler
from seal_agent.mqtt_backoff import Backoff
from seal_agent.mqtt_commands import CommandInbox
from seal_agent.mqtt_socket import connect_error, send_at_once
from seal_protocol import SealStatus, cmd_topic, encode_status, event_topic, snapshot_topic, status_topic
from seal_protocol.status import StorageReport
from seal_protocol.topics import receipt_topic
from seal_protocol.transport import mqtt_client_id

logger = logging.getLogger(__name__)

DEFAULT_SESSION_EXPIRY_S = 7 * 24 * 3600
#: Ceiling of the reconnect back-off (s): how long a broker that is back at most waits for the seal.
DEFAULT_RECONNECT_MAX_S = 5.0
_STATUS = None  # marks a status message in the mid table
_ACCEPTED_RC = (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN)  # NO_CONN: queued for reconnect


_Tag = tuple[Lane, int] | None


def _no_ack(lane: Lane, key: int, failure: str | None) -> None:
    pass


def _no_connection(connected: bool) -> None:
    pass


class MqttPublisher:
    """The seal's MQTT connection: :meth:`start` connects in the background and reconnects until :meth:`stop`."""

    def __init__(
        self,
        *,
        device_id: str,
        host: str,
        port: int,
        username: str,
        password: str,
        keepalive_s: int = 30,
        tls_ca_file: Path | None = None,
        agent_version: str = __version__,
        session_expiry_s: int = DEFAULT_SESSION_EXPIRY_S,
        reconnect_min_s: float = 1.0,
        reconnect_max_s: float = DEFAULT_RECONNECT_MAX_S,
        max_inflight: int = 25,
        rng: random.Random | None = None,
        stamps: ConnectionStamps | None = None,  # kept in the state directory: they only grow
    ) -> None:
        self.device_id = device_id
        self.username = username
        self.url = f"{'mqtts' if tls_ca_file is not None else 'mqtt'}://{host}:{port}"
        self.host = host
        self.port = port
        self.keepalive_s = keepalive_s
        self.agent_version = agent_version
        self.session_expiry_s = session_expiry_s
        self.reconnect_min_s = max(1.0, reconnect_min_s)  # never faster than once a second
        self.reconnect_max_s = max(self.reconnect_min_s, reconnect_max_s)
        self._stamps = stamps or ConnectionStamps()
        self._event_topic = event_topic(device_id)
        self._status_topic = status_topic(device_id)
        self._cmd_topic = cmd_topic(device_id)
        self._receipt_topic = receipt_topic(device_id)
        self._on_ack: AckHandler = _no_ack
        self._on_connection: ConnectionHandler = _no_connection
        self._on_command: CommandHandler | None = None
        self._on_receipt: ReceiptHandler | None = None
        self._lock = threading.Lock()
        self._mids: dict[int, _Tag] = {}  # mid -> (lane, key) (or _STATUS) of messages awaiting PUBACK
        self._early_acks: dict[int, str | None] = {}  # PUBACKs that arrived before publish() returned their mid
        self._connected = threading.Event()
        self._subscribed = threading.Event()  # the cmd and receipt subscriptions of this connection are granted
        self._stopping = False
        self._refused: ReasonCode | None = None  # this attempt's refused CONNACK, logged at the disconnect after it
        self._status_due = False  # online status owed on this connection, waiting for the first PUBACK
        self._status_lock = threading.Lock()  # guards the storage report and its count
        self._storage: StorageReport | None = None  # the seal cannot store events: its online says so
        self._storage_told = 0  # reports given so far: the last online sent carries the last one

        client_id = mqtt_client_id(device_id, password)  # not the bare device id: nobody else can take our session
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5, manual_ack=True)
        client.username_pw_set(username, password)
        if tls_ca_file is not None:
            try:
                client.tls_set(ca_certs=str(tls_ca_file))
            except (OSError, ssl.SSLError) as exc:
                raise ConfigError([f"mqtt.tls_ca_file: {exc}"]) from exc
        client.max_inflight_messages_set(max_inflight)
        client.max_queued_messages_set(0)
        client.on_connect = self._handle_connect
        client.on_disconnect = self._handle_disconnect
        client.on_connect_fail = self._handle_connect_fail
        client.on_publish = self._handle_publish
        client.on_message = self._handle_message
        client.on_subscribe = self._handle_subscribe
        client.on_socket_open = send_at_once
        self._client = client
        self._backoff = Backoff(
            client, min_s=self.reconnect_min_s, max_s=self.reconnect_max_s, rng=rng or random.Random(), log=logger
        )
        self._commands = CommandInbox(client, self.url)
        self._set_will()

    # -- Publisher --------------------------------------------------------------------------------------------

    def bind_delivery(
        self, *, on_ack: AckHandler, on_connection: ConnectionHandler, on_receipt: ReceiptHandler | None = None
    ) -> None:
        self._on_ack = on_ack
        self._on_connection = on_connection
        self._on_receipt = on_receipt

    def bind_commands(self, on_command: CommandHandler) -> None:
        self._on_command = on_command

    def publish_event(self, seq: int, data: bytes) -> None:
        self._publish(self._event_topic, data, retain=False, tag=(Lane.EVENT, seq))

    def publish_snapshot(self, qid: int, sha: str, jpeg: bytes) -> None:
        self._publish(snapshot_topic(self.device_id, sha), jpeg, retain=False, tag=(Lane.SNAPSHOT, qid))

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    @property
    def retained_commands_ignored(self) -> int:
        """Messages delivered retained on the ``cmd`` topic, taken as no command."""
        return self._commands.retained_ignored

    # -- life cycle -------------------------------------------------------------------------------------------

    def start(self) -> None:
        """Connect in the background (paho's network thread); reconnects until :meth:`stop`."""
        properties = Properties(PacketTypes.CONNECT)
        properties.SessionExpiryInterval = self.session_expiry_s
        self._client.connect_async(
            self.host, self.port, keepalive=self.keepalive_s, clean_start=False, properties=properties
        )
        self._client.loop_start()
        logger.info("connecting to %s as %s", self.url, self.username)

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    def wait_listening(self, timeout: float) -> bool:
        """Wait until the broker granted this connection's command and receipt subscriptions."""
        return self._subscribed.wait(timeout)

    def stop(self, timeout: float = 3.0) -> None:
        """Publish the retained ``offline`` status (if connected), disconnect and stop the network thread."""
        self._stopping = True
        self._commands.close()
        if self._connected.is_set() and self._connection_ts is not None:
            # The stamp of the connection it ends (seal_protocol.status): ordered after that connection's online.
            payload = encode_status(SealStatus.OFFLINE, agent_version=self.agent_version, ts=self._connection_ts)
            try:
                self._publish(self._status_topic, payload, retain=True, tag=_STATUS).wait_for_publish(timeout)
            except (PublishError, RuntimeError, ValueError) as exc:
                logger.warning("offline status not sent: %s", exc)
        self._client.disconnect()
        self._client.loop_stop()
        self._connected.clear()

    # -- internals --------------------------------------------------------------------------------------------

    def _publish(self, topic: str, payload: bytes, *, retain: bool, tag: _Tag) -> mqtt.MQTTMessageInfo:
        """Publish at QoS 1; its PUBACK is matched to ``tag`` (every QoS 1 message goes through here, so no PUBACK
        is left in ``_early_acks``)."""
        info = self._client.publish(topic, payload, qos=1, retain=retain)
        if info.rc not in _ACCEPTED_RC:
            raise PublishError(f"paho refused the message: {mqtt.error_string(info.rc)}")
        with self._lock:
            early = info.mid in self._early_acks
            failure = self._early_acks.pop(info.mid, None)
            if not early:
                self._mids[info.mid] = tag
        if early:
            self._report(tag, failure)
        return info

    def _report(self, tag: _Tag, failure: str | None) -> None:
        if tag is None:
            if failure is not None:
                logger.error("broker refused the status message: %s", failure)
            return
        self._on_ack(tag[0], tag[1], failure)

    def _set_will(self) -> None:
        """Stamp the next connection (before it is made) and build its Last Will with that stamp; the online sent
        on that connection carries the same stamp, so the court orders them
        (:func:`seal_protocol.status.supersedes`). Stamps only grow (:mod:`seal_agent.connection_stamps`)."""
        self._connection_ts = self._stamps.next()
        if self._connection_ts is None:  # no stamp (logged): this connection says no status, its events flow
            self._client.will_clear()
            return
        payload = encode_status(SealStatus.OFFLINE, agent_version=self.agent_version, ts=self._connection_ts)
        self._client.will_set(self._status_topic, payload, qos=1, retain=True)

    def _handle_connect(
        self, client: mqtt.Client, userdata: Any, flags: mqtt.ConnectFlags, reason_code: ReasonCode, properties: Any
    ) -> None:
        if reason_code.is_failure:
            self._refused = reason_code  # paho disconnects next: _handle_disconnect draws the delay and logs it
            return
        self._subscribed.clear()
        self._commands.new_connection()
        self._connected.set()
        again = " again" if self._backoff.connected() else ""
        logger.info("connected%s to %s (session present: %s)", again, self.url, flags.session_present)
        with self._lock:
            events_owed = any(tag is not None for tag in self._mids.values())
        topics = self._listened_topics()
        if topics:
            self._client.subscribe([(topic, 1) for topic in topics])
        self._status_due = True
        if not events_owed:  # else paho re-sends them right after this callback; online follows their first PUBACK
            self._publish_online()
        self._on_connection(True)

    def report_storage(self, report: StorageReport | None) -> None:
        """The seal cannot store events (``report``), or can again (None): said in an ``online`` with this
        connection's stamp, replacing the one sent (now if connected, else on the next connection)."""
        with self._status_lock:
            self._storage, self._storage_told = report, self._storage_told + 1
        if self._connected.is_set() and not self._status_due:
            try:
                self._publish_online()
            except PublishError as exc:  # the next connection's online says it
                logger.warning("storage status not sent: %s", exc)

    def _publish_online(self) -> None:
        """The ``online`` of this connection with the storage report as it is; sent again if the report changed
        meanwhile (never under a lock of ours: paho calls on_publish under its own, which publish takes)."""
        self._status_due = False
        while self._connection_ts is not None:
            with self._status_lock:
                report, told = self._storage, self._storage_told
            payload = encode_status(
                SealStatus.ONLINE, agent_version=self.agent_version, ts=self._connection_ts, storage=report
            )
            self._publish(self._status_topic, payload, retain=True, tag=_STATUS)
            with self._status_lock:
                if told == self._storage_told:  # a later report is sent by whoever made it, or by this loop
                    return

    def _handle_disconnect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.DisconnectFlags,
        reason_code: ReasonCode,
        properties: Any,
    ) -> None:
        was_connected = self._connected.is_set()
        self._connected.clear()
        self._subscribed.clear()
        self._commands.new_connection()
        self._set_will()  # a fresh timestamp for the next connection's Last Will
        if self._stopping:
            return
        if was_connected:
            logger.warning("disconnected from %s: %s", self.url, reason_code)
            self._on_connection(False)
        delay = self._backoff.schedule()
        refused, self._refused = self._refused, None
        if refused is not None:
            problem = f"the broker at {self.url} refused the connection as {self.username}: {refused}"
            self._backoff.log_problem(logging.ERROR, problem, delay)
        else:
            logger.debug("reconnecting to %s in %.1f s (attempt %d)", self.url, delay, self._backoff.attempt)

    def _handle_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        if self._stopping:
            return
        delay = self._backoff.schedule()
        self._backoff.log_problem(logging.WARNING, f"cannot reach the broker at {self.url}: {connect_error()}", delay)

    def _handle_publish(
        self, client: mqtt.Client, userdata: Any, mid: int, reason_code: ReasonCode, properties: Any
    ) -> None:
        failure = str(reason_code) if reason_code.is_failure else None
        with self._lock:
            known = mid in self._mids
            tag = self._mids.pop(mid, None)
            if not known:
                self._early_acks[mid] = failure
        if failure is None:
            self._backoff.attempt = 0  # the broker takes our messages: the next outage starts with a short back-off
        if known:
            self._report(tag, failure)
        if self._status_due and self._connected.is_set():
            self._publish_online()

    def _listened_topics(self) -> list[str]:
        return [
            topic
            for topic, handler in ((self._cmd_topic, self._on_command), (self._receipt_topic, self._on_receipt))
            if handler is not None
        ]

    def _handle_subscribe(
        self, client: mqtt.Client, userdata: Any, mid: int, reason_codes: list[ReasonCode], properties: Any
    ) -> None:
        topics = self._listened_topics()
        failed = [f"{topic}: {rc}" for topic, rc in zip(topics, reason_codes, strict=False) if rc.is_failure]
        if failed:
            logger.error("broker refused the subscription to %s", ", ".join(failed))
        else:
            logger.info("listening for the court on %s", ", ".join(topics))
            self._subscribed.set()

    def _handle_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        if message.topic == self._receipt_topic and self._on_receipt is not None:
            self._handle_receipt(self._on_receipt, message)
            return
        handler = self._on_command
        if handler is None or message.topic != self._cmd_topic:
            logger.warning("ignoring a message on %s", message.topic)
            self._client.ack(message.mid, message.qos)
            return
        self._commands.deliver(handler, message)

    def _handle_receipt(self, handler: ReceiptHandler, message: mqtt.MQTTMessage) -> None:
        try:
            handler(bytes(message.payload))
        except Exception:  # paho's network thread; a lost receipt only costs a re-send
            logger.exception("court receipt (mid %d) could not be handled", message.mid)
        self._client.ack(message.mid, message.qos)
