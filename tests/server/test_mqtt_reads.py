"""The ingest's buffered reads and batched acknowledgements against a real Mosquitto (``server.core.buffered_socket``,
``TolerantClient.ack_many``).

One read of the socket now brings many packets, and a packet may span reads (a snapshot is larger than a read): a
stream of small events and large pictures, published back to back without waiting, must come out whole, each
message once; and the acknowledgements of a batch, written as one piece, must each reach the broker, so that a
restarted server gets nothing again.
"""

from __future__ import annotations

import hashlib
import random
import socket
import struct
from pathlib import Path

import pytest
from paho.mqtt._packet import decode_publish
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import MalformedPacket, Properties

from seal_dev.broker import PrivateBroker
from seal_protocol import EventType, snapshot_topic
from server.core.buffered_socket import READ_SIZE, BufferedSocket
from server.core.db import SessionFactory
from server.core.mqtt import TolerantClient, plain_publish
from tests.server.helpers import CASE_A, SimulatedSeal, register
from tests.server.mqtt_helpers import seal_connection, server_mqtt_settings
from tests.server.test_mqtt_ingest import event_rows, start_ingest

EVENTS, PICTURES = 400, 4


def _large_picture(shade: int) -> bytes:
    """A real JPEG larger than one read of the socket: noise does not compress."""
    import cv2
    import numpy as np  # the agent's extra, as jpeg_bytes

    noise = np.random.default_rng(shade).integers(0, 256, (300, 400, 3), dtype=np.uint8)
    ok, encoded = cv2.imencode(".jpg", noise, [cv2.IMWRITE_JPEG_QUALITY, 95])
    assert ok
    picture = bytes(encoded.tobytes())
    assert len(picture) > READ_SIZE
    return picture


def test_a_burst_of_events_and_large_pictures_is_stored_whole_and_acknowledged_once(
    broker: PrivateBroker, session_factory: SessionFactory, tmp_path: Path
) -> None:
    seal = SimulatedSeal("seal-a", CASE_A)
    register(session_factory, seal)
    pictures = [_large_picture(shade) for shade in range(PICTURES)]
    names = [hashlib.sha256(picture).hexdigest() for picture in pictures]
    settings = server_mqtt_settings(broker, tmp_path)
    first = start_ingest(settings, session_factory, tmp_path)
    try:
        with seal_connection(broker, seal.device_id) as conn:
            intrusion = seal.event(EventType.INTRUSION, {"armed": True, "snapshots": names})
            infos = [conn.client.publish(seal.event_topic, intrusion, qos=1)]
            every = EVENTS // PICTURES
            for n in range(EVENTS):
                infos.append(conn.client.publish(seal.event_topic, seal.event(), qos=1))
                if n % every == 0:
                    topic = snapshot_topic(seal.device_id, names[n // every])
                    infos.append(conn.client.publish(topic, pictures[n // every], qos=1))
            for info in infos:
                info.wait_for_publish(30)
            first.wait(lambda m: m.stored >= EVENTS + 1 and m.snapshots >= PICTURES, "the burst")
    finally:
        first.ingest.stop()
    assert first.metrics.snapshot().rejected_total == 0

    second = start_ingest(settings, session_factory, tmp_path)  # the same persistent session
    try:
        with seal_connection(broker, seal.device_id) as conn:
            conn.publish(seal.event_topic, seal.event())  # behind anything the broker would send again
        snap = second.wait(lambda m: m.stored >= 1, "the event after the restart")
    finally:
        second.ingest.stop()
    assert snap.duplicates == 0 and snap.snapshots == 0, "a message acknowledged in a batch came again"
    assert [seq for _device, _case, seq in event_rows(session_factory)] == list(range(1, EVENTS + 3))
    stored = sorted(p.name for p in (tmp_path / "snapshots").rglob("*") if p.is_file())
    assert all(any(name in path for path in stored) for name in names), stored


@pytest.mark.parametrize("seed", range(5))
def test_a_buffered_socket_hands_out_the_stream_as_sent_whatever_the_reads(seed: int) -> None:
    """The bytes come out in order and whole, whatever sizes the reader asks for and however the sender's writes
    were cut; an end of stream reads as b""."""
    rng = random.Random(seed)
    data = rng.randbytes(3 * READ_SIZE + rng.randrange(1000))
    left, right = socket.socketpair()
    with left, right:
        reader = BufferedSocket(right)
        received = bytearray()
        at = 0
        while at < len(data) or reader.pending():
            if at < len(data):
                piece = rng.randrange(1, 5000)
                left.sendall(data[at : at + piece])
                at += piece
            while len(received) < min(at, len(data)):
                received += reader.recv(rng.choice((1, 2, 7, 600, READ_SIZE)))
        left.close()
        assert bytes(received) == data
        assert reader.pending() == 0
        assert reader.recv(1) == b""


def _publish_packet(topic: bytes, payload: bytes, qos: int, mid: int, properties: Properties | None) -> bytes:
    """A PUBLISH after its fixed header, as paho's own encoder writes it (``_packet.py`` has no public encoder)."""
    packed_properties = properties.pack() if properties is not None else b"\x00"
    head = struct.pack("!H", len(topic)) + topic + (struct.pack("!H", mid) if qos else b"")
    return head + packed_properties + payload


@pytest.mark.parametrize("seed", range(20))
def test_the_plain_publish_path_reads_what_paho_reads_and_leaves_paho_the_rest(seed: int) -> None:
    """Whatever the packet — any QoS, with or without properties, cut short anywhere — ``plain_publish`` either
    gives what paho's parser gives or leaves the packet to paho: it never reads a packet paho would refuse, nor one
    with properties."""
    rng = random.Random(seed)
    for _ in range(200):
        qos = rng.choice((0, 1, 2))
        topic = rng.choice((b"", b"seal/v1/seal-a/event", rng.randbytes(rng.randrange(1, 40))))
        properties = None
        if rng.random() < 0.3:
            properties = Properties(PacketTypes.PUBLISH)
            properties.UserProperty = [("k", "v")]
        packet = _publish_packet(topic, rng.randbytes(rng.randrange(0, 700)), qos, rng.randrange(1, 65536), properties)
        if rng.random() < 0.3:
            packet = packet[: rng.randrange(0, len(packet) + 1)]
        header = 0x30 | (qos << 1) | rng.choice((0, 1))
        plain = plain_publish(header, packet)
        try:
            paho = decode_publish(header, packet, MQTTProtocolVersion.MQTTv5)
        except MalformedPacket:
            assert plain is None, packet
            continue
        if plain is None:
            assert qos == 2 or not paho.topic or paho.properties.json(), packet
        else:
            assert (qos, not paho.properties.json()) == (paho.qos, True)
            assert plain == (paho.topic, bytes(paho.payload), paho.qos, paho.mid if qos else 0, paho.retain)


def test_an_mqtt_3_connection_never_takes_the_plain_path() -> None:
    """MQTT 3.1.1 has no properties: the byte after the packet id is the payload's first (a 0 here), which the plain
    path, reading MQTT 5, would take for an empty property length and drop."""
    client = TolerantClient(CallbackAPIVersion.VERSION2, protocol=MQTTProtocolVersion.MQTTv311, manual_ack=True)
    plain: list[tuple[bytes, bytes, int, int, bool]] = []
    paho: list[bytes] = []
    client.on_plain_publish = lambda *message: plain.append(message)
    client.on_message = lambda _c, _u, message: paho.append(bytes(message.payload))
    topic = b"seal/v1/seal-a/event"
    client._in_packet["command"] = 0x32  # PUBLISH, QoS 1
    client._in_packet["packet"] = bytearray(struct.pack("!H", len(topic)) + topic + struct.pack("!H", 5) + b"\x00ABC")
    client._handle_publish()
    assert (plain, paho) == ([], [b"\x00ABC"])
