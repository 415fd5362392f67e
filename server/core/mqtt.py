"""The court server's MQTT clients, configured in one place: paho 2.x, MQTT v5, the server's account, TLS if set.

The ingest (a persistent session, manual acknowledgement after commit) and the command dispatcher (a clean session
that only publishes) both build their client here, so credentials, TLS, client ids and the reconnect policy are
set once. paho's errors are converted here, at the boundary, into :class:`~server.errors.BrokerUnavailable`.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import struct
import time
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.client import PUBACK
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from seal_protocol.transport import mqtt_client_id, mqtt_shared_group
from server.config import MqttSettings, read_password
from server.core.buffered_socket import BufferedSocket
from server.errors import BrokerUnavailable

logger = logging.getLogger(__name__)

#: Reconnect back-off: from 1 s doubling to this ceiling, so a broker that is back is used again within seconds
#: without being hammered while it is down.
RECONNECT_MIN_S = 1
RECONNECT_MAX_S = 5
#: While the broker stays unreachable (or keeps refusing the connection), the message is repeated at most this often.
UNREACHABLE_LOG_EVERY_S = 60.0
REFUSED_LOG_EVERY_S = UNREACHABLE_LOG_EVERY_S
#: After paho's read, at most this many more packets are taken from memory before its loop writes and checks its
#: keepalive: at most 100 events of a few hundred bytes, or fewer snapshots (up to the broker's packet limit), since a
#: packet larger than what is held is read from the socket as paho reads it. (paho's own read takes one packet for
#: each of its messages awaiting an acknowledgement, e.g. the receipts: that is its choice, left as it is.)
READ_BURST = 100
_PUBACK = struct.Struct("!BBH")  # fixed header, remaining length 2, packet id


def make_client(settings: MqttSettings, *, role: str = "", manual_ack: bool = False) -> TolerantClient:
    """A client on the server's account; ``role`` tells two clients of one server apart in their client ids (the
    ingest's persistent session lives under the plain id). Raise ``ConfigError`` for an unreadable password file
    and :class:`BrokerUnavailable` for an unusable CA file."""
    password = read_password(settings.password_file)
    client = TolerantClient(
        CallbackAPIVersion.VERSION2,
        client_id=mqtt_client_id(client_name(settings, role), password),
        protocol=mqtt.MQTTv5,
        manual_ack=manual_ack,
    )
    client.username_pw_set(settings.username, password)
    if settings.tls_ca_file is not None:
        try:
            client.tls_set(ca_certs=str(settings.tls_ca_file))
        except (OSError, ValueError) as exc:
            raise BrokerUnavailable(f"cannot use CA file {settings.tls_ca_file}: {exc}") from exc
    client.reconnect_delay_set(min_delay=RECONNECT_MIN_S, max_delay=RECONNECT_MAX_S)
    client.on_connect_fail = _UnreachableLog(settings, role or "ingest")
    client.on_socket_open = send_at_once
    return client


class TolerantClient(mqtt.Client):
    """paho's client, except that a PUBLISH whose properties paho cannot parse is delivered without them; its reads
    are buffered (:mod:`server.core.buffered_socket`) and :meth:`ack_many` acknowledges a batch in one write.

    paho drops the whole connection at any property it takes for malformed: a UTF-8 string holding U+FEFF, say,
    which MQTT 5 tells a receiver to keep ([MQTT-1.5.4-3]) and Mosquitto forwards. The message, unacknowledged, then
    came first again at every reconnect, and to every new session if retained: one publish from one seal's account
    stopped the court's ingest for good. The court reads no property of a seal's message, so such a message is
    delivered with none — the ingest then stores or refuses it like any other — with a warning, and
    ``on_dropped_properties`` (given the topic) is told. A packet whose framing itself is broken still ends the
    connection, as before: nothing could be delivered from it.
    """

    on_dropped_properties: Callable[[str], None] | None = None
    #: With ``manual_ack``: called on paho's thread, in place of ``on_message``, for a PUBLISH at QoS 0 or 1 that
    #: carries no MQTT properties (every seal's message) with its topic (bytes, as received), payload, QoS, packet
    #: id and RETAIN flag. paho's own path builds a ``Properties``, an ``MQTTMessage`` with its ``MQTTMessageInfo``
    #: (a lock and a condition) and formats a debug line for each: a third of its thread's time for a 600-byte
    #: event. Other PUBLISHes take paho's path to ``on_message``.
    on_plain_publish: Callable[[bytes, bytes, int, int, bool], None] | None = None

    def _create_socket(self) -> Any:
        sock = super()._create_socket()
        return BufferedSocket(sock) if self._transport != "websockets" else sock

    def loop_read(self, max_packets: int = 1) -> MQTTErrorCode:
        """paho's read, then the packets already held in memory (:mod:`server.core.buffered_socket`), one at a time
        and at most :data:`READ_BURST` of them, before the loop goes back to its writes and keepalive."""
        rc = super().loop_read(max_packets)
        for _ in range(READ_BURST):
            sock = self._sock
            if rc != MQTTErrorCode.MQTT_ERR_SUCCESS or not isinstance(sock, BufferedSocket) or not sock.pending():
                break
            rc = self._packet_read()  # what paho's loop_read does for each packet
            if rc == MQTTErrorCode.MQTT_ERR_AGAIN:
                return MQTTErrorCode.MQTT_ERR_SUCCESS
            if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                return self._loop_rc_handle(rc)
        return rc

    def ack_many(self, messages: list[tuple[int, int]]) -> None:
        """Acknowledge ``messages`` ((packet id, QoS), ``manual_ack``): those at QoS 1 in one write — paho's
        :meth:`ack` queues a packet, wakes its loop and makes a system call to send each 4-byte PUBACK, the same
        bytes (MQTT 5: reason Success and no properties may be left out, [MQTT-3.4.2.1]) —, those at QoS 2 by paho's
        own exchange, one by one; QoS 0 needs none."""
        if not self._manual_ack:  # (as ack(): without manual_ack, paho acknowledged them on arrival)
            return
        if packets := b"".join(_PUBACK.pack(PUBACK, 2, mid) for mid, qos in messages if qos == 1):
            self._packet_queue(PUBACK, packets, 0, 1)
        for mid, qos in messages:
            if qos == 2:
                self.ack(mid, qos)

    def _handle_publish(self) -> MQTTErrorCode:
        header, packet = self._in_packet["command"], self._in_packet["packet"]
        on_plain = self.on_plain_publish
        if (
            on_plain is not None
            and self._manual_ack
            and self._protocol == mqtt.MQTTv5
            and (plain := plain_publish(header, packet)) is not None
        ):
            with self._in_callback_mutex:  # as paho holds it around its callbacks
                on_plain(*plain)
            return MQTTErrorCode.MQTT_ERR_SUCCESS  # QoS 1: acknowledged by the caller (manual_ack); QoS 0: nothing
        problem = unreadable_properties(header, packet)
        stripped = None if problem is None else publish_without_properties(header, packet)
        if stripped is not None:  # (a broken framing is left to paho, which ends the connection)
            topic = _topic_of(stripped)
            logger.warning(
                "a message on %r has MQTT properties paho cannot read (%s): delivered without them", topic, problem
            )
            self._in_packet["packet"] = stripped
            if self.on_dropped_properties is not None:
                self.on_dropped_properties(topic)
        return super()._handle_publish()


def plain_publish(header: int, packet: bytes | bytearray) -> tuple[bytes, bytes, int, int, bool] | None:
    """(topic, payload, qos, packet id, retain) of an MQTT 5 PUBLISH (as for :func:`unreadable_properties`) at QoS
    0 or 1 with a topic and no properties; None for any other, left to paho (which also ends the connection on a
    framing that does not hold)."""
    qos = (header & 0x06) >> 1
    at = _properties_at(header, packet)
    if qos > 1 or at is None or at >= len(packet) or packet[at] != 0:  # (past the end: a broken framing)
        return None
    topic_end = 2 + int.from_bytes(packet[:2], "big")
    topic = bytes(packet[2:topic_end])
    if not topic:
        return None
    mid = int.from_bytes(packet[topic_end:at], "big") if qos else 0
    return topic, bytes(packet[at + 1 :]), qos, mid, bool(header & 0x01)


def unreadable_properties(header: int, packet: bytes | bytearray) -> str | None:
    """Why paho cannot read the properties of an MQTT 5 PUBLISH (``packet``, after the fixed header whose first byte
    is ``header``), or None: they can be read, there are none, or the packet is too short to tell. paho's parser,
    run inside its network loop, ends the connection on a malformed packet and its thread on any other exception."""
    head_end = _properties_at(header, packet)
    if head_end is None or head_end >= len(packet) or packet[head_end] == 0:
        return None
    try:
        Properties(PacketTypes.PUBLISH).unpack(packet[head_end:])
    except Exception as exc:  # noqa: BLE001 - whatever paho's parser raises (MalformedPacket, MQTTException, KeyError...)
        return f"{type(exc).__name__}: {exc}"
    return None


def publish_without_properties(header: int, packet: bytes | bytearray) -> bytearray | None:
    """``packet`` (as for :func:`unreadable_properties`) with its properties taken out: the topic, the packet id
    (QoS 1 and 2), a property length of 0 and the payload. None if the packet's framing does not hold (a length past
    its end)."""
    head_end = _properties_at(header, packet)
    if head_end is None:
        return None
    at, length, shift = head_end, 0, 0
    while True:  # the properties' length: a Variable Byte Integer of 1 to 4 bytes
        if at >= len(packet) or at - head_end >= 4:
            return None
        byte = packet[at]
        at += 1
        length |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            break
    if at + length > len(packet):
        return None
    return bytearray(packet[:head_end]) + b"\x00" + packet[at + length :]


def _properties_at(header: int, packet: bytes | bytearray) -> int | None:
    """Where a PUBLISH's properties begin: after the topic and, at QoS 1 and 2, the packet id."""
    if len(packet) < 2:
        return None
    return 2 + int.from_bytes(packet[:2], "big") + (2 if (header & 0x06) >> 1 else 0)


def _topic_of(packet: bytes | bytearray) -> str:
    return packet[2 : 2 + int.from_bytes(packet[:2], "big")].decode("utf-8", errors="replace")[:200]


def client_name(settings: MqttSettings, role: str = "") -> str:
    """The readable part of the client id of ``role``'s client; the broker sees it followed by a suffix that only the
    password's holder can compute (:func:`~seal_protocol.transport.mqtt_client_id`), never logged here."""
    return f"{settings.client_id}-{role}" if role else settings.client_id


def broker_group(settings: MqttSettings) -> str | None:
    """The broker's name of the ingest's shared subscription group: ``[mqtt] shared_group`` followed by a suffix
    derived from the password (:func:`~seal_protocol.transport.mqtt_shared_group`), so that no seal can join it;
    ``None`` without a group. Every worker has the same password file, hence the same group."""
    if settings.shared_group is None:
        return None
    return mqtt_shared_group(settings.shared_group, read_password(settings.password_file))


def send_at_once(_client: mqtt.Client, _userdata: Any, sock: Any) -> None:
    """paho's ``on_socket_open``: TCP_NODELAY on the connection. paho leaves Nagle's algorithm on, so a small
    packet (an acknowledgement, a receipt) written while the one before is unacknowledged waits for the broker's
    delayed TCP acknowledgement, about 40 ms on Linux: measured in ``bench/ingest.py``."""
    with contextlib.suppress(OSError, AttributeError):  # not a TCP socket (a test's socket pair): nothing to do
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class _UnreachableLog:
    """paho's ``on_connect_fail``: a WARNING naming the broker's address and why it cannot be reached (paho does
    not say), the first time and then once a minute while it lasts, instead of silence or a traceback."""

    def __init__(self, settings: MqttSettings, role: str) -> None:
        self.settings = settings
        self.role = role
        self._last = -UNREACHABLE_LOG_EVERY_S

    def __call__(self, _client: mqtt.Client, _userdata: Any) -> None:
        now = time.monotonic()
        if now - self._last < UNREACHABLE_LOG_EVERY_S:
            return
        self._last = now
        host, port = self.settings.host, self.settings.port
        logger.warning(
            "MQTT %s: cannot reach the broker at %s:%d (%s); retrying every %d s at most",
            self.role,
            host,
            port,
            _why_unreachable(host, port),
            RECONNECT_MAX_S,
        )


class RefusedLog:
    """A CONNACK that refuses the connection (e.g. "Not authorized" for a wrong password) as an ERROR naming the
    broker's address, the account and the reason: the first time (or when the reason changes), then at most once a
    minute while it lasts, since paho tries again every few seconds; and an INFO once the broker accepts again.
    Called from the client's ``on_connect`` (paho's network thread, one per client)."""

    def __init__(self, settings: MqttSettings, role: str) -> None:
        self.settings = settings
        self.role = role
        self._last: tuple[str, float] | None = None  # (reason, monotonic time) of the last ERROR
        self._refusals = 0

    def refused(self, reason_code: ReasonCode) -> None:
        self._refusals += 1
        reason, now = str(reason_code), time.monotonic()
        if self._last is not None and self._last[0] == reason and now - self._last[1] < REFUSED_LOG_EVERY_S:
            return
        self._last = (reason, now)
        settings = self.settings
        logger.error(
            "MQTT %s: the broker at %s:%d refused the connection as %s: %s; retrying every %d s at most "
            "(this message is repeated at most once a minute)",
            self.role,
            settings.host,
            settings.port,
            settings.username,
            reason,
            RECONNECT_MAX_S,
        )

    def accepted(self) -> None:
        if self._refusals:
            logger.info(
                "MQTT %s: the broker at %s:%d accepts the connection again (after %d refused attempts)",
                self.role,
                self.settings.host,
                self.settings.port,
                self._refusals,
            )
        self._last, self._refusals = None, 0


def _why_unreachable(host: str, port: int) -> str:
    try:
        with socket.create_connection((host, port), timeout=2):
            return "the TCP connection opens: the MQTT or TLS handshake failed"
    except OSError as exc:
        return str(exc) or type(exc).__name__


def connect_in_background(client: mqtt.Client, settings: MqttSettings, *, persistent: bool) -> None:
    """Connect (and reconnect) from paho's network thread. ``persistent``: resume the session the broker keeps for
    ``settings.session_expiry_s`` (messages queued while the server was away are delivered), else start clean."""
    properties = None
    if persistent:
        properties = Properties(PacketTypes.CONNECT)
        properties.SessionExpiryInterval = settings.session_expiry_s
    client.connect_async(
        settings.host, settings.port, keepalive=settings.keepalive_s, clean_start=not persistent, properties=properties
    )
    client.loop_start()


def publish_problem(info: mqtt.MQTTMessageInfo) -> str | None:
    """Why paho did not queue a publish (e.g. "The client is not currently connected."), or ``None``."""
    return None if info.rc == mqtt.MQTT_ERR_SUCCESS else mqtt.error_string(info.rc)


def clear_retained(client: mqtt.Client | None, topic: str) -> int | None:
    """Delete the retained message on ``topic`` (an empty retained publish, QoS 1) through ``client``: its packet id,
    None if not sent (no client, or no connection). The ingest's clears and the command publisher's sweep alike."""
    info = None if client is None else client.publish(topic, b"", qos=1, retain=True)
    return info.mid if info is not None and info.rc == mqtt.MQTT_ERR_SUCCESS else None
