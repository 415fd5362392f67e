"""MQTT v5 properties the broker forwards and paho refuses to parse cannot stop the ingest.

Mosquitto keeps a U+FEFF in a property's string (MQTT 5 [MQTT-1.5.4-3] says a receiver must not strip it), and paho
took it for a malformed packet and dropped the connection; the message, unacknowledged, came first again at every
reconnect, and to every new session when retained: one seal's publish stopped every seal's ingest for good. Found by
a hostile review; each test below failed before :class:`server.core.mqtt.TolerantClient`.
"""

from __future__ import annotations

import time

import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from seal_dev.broker import PrivateBroker
from seal_protocol import EventType, encode_status
from seal_protocol.status import SealStatus
from server.core.db import SessionFactory
from server.core.mqtt import publish_without_properties, unreadable_properties
from tests.server.helpers import SimulatedSeal
from tests.server.mqtt_helpers import seal_connection, server_mqtt_settings
from tests.server.test_mqtt_ingest import Running, event_rows, running, seals, start_ingest

__all__ = ["running", "seals"]  # fixtures


def _hostile(where: str) -> Properties:
    props = Properties(PacketTypes.PUBLISH)
    match where:
        case "user_property":
            props.UserProperty = [("k", "\ufeff")]
        case "content_type":
            props.ContentType = "\ufeff"
        case "response_topic":
            props.ResponseTopic = "x\ufeff"
    return props


def _dropped(run: Running) -> int:
    return int(run.metrics.registry.get_sample_value("seal_mqtt_properties_dropped_total") or 0)


@pytest.mark.parametrize("where", ["user_property", "content_type", "response_topic"])
def test_a_property_paho_cannot_read_costs_the_message_its_properties_only(
    broker: PrivateBroker,
    running: Running,
    seals: tuple[SimulatedSeal, SimulatedSeal],
    session_factory: SessionFactory,
    where: str,
) -> None:
    a, b = seals
    with seal_connection(broker, a.device_id) as conn_a, seal_connection(broker, b.device_id) as conn_b:
        info = conn_a.client.publish(a.event_topic, a.event(EventType.HEARTBEAT, {}), qos=1, properties=_hostile(where))
        info.wait_for_publish(5)
        for _ in range(3):
            conn_b.publish(b.event_topic, b.event())
        running.wait(lambda m: m.stored >= 4, "the four events")
    rows = event_rows(session_factory)
    assert sorted((device, seq) for device, _case, seq in rows) == [
        ("seal-a", 1),
        ("seal-b", 1),
        ("seal-b", 2),
        ("seal-b", 3),
    ]
    assert _dropped(running) == 1
    assert running.ingest.connected


def test_a_retained_status_with_such_a_property_reaches_a_new_session(
    broker: PrivateBroker, seals: tuple[SimulatedSeal, SimulatedSeal], session_factory: SessionFactory, tmp_path
) -> None:
    a, b = seals
    with seal_connection(broker, a.device_id) as conn_a:
        conn_a.client.publish(
            a.status_topic, encode_status(SealStatus.ONLINE), qos=1, retain=True, properties=_hostile("content_type")
        ).wait_for_publish(5)
    run = start_ingest(server_mqtt_settings(broker, tmp_path), session_factory, tmp_path)
    try:
        with seal_connection(broker, b.device_id) as conn_b:
            conn_b.publish(b.event_topic, b.event())
            run.wait(lambda m: m.stored >= 1 and m.status_updates >= 1, "seal b's event and seal a's status")
        assert _dropped(run) == 1
    finally:
        run.ingest.stop()


def test_a_restarted_court_is_not_held_by_such_a_message(
    broker: PrivateBroker, seals: tuple[SimulatedSeal, SimulatedSeal], session_factory: SessionFactory, tmp_path
) -> None:
    """Published while the court is away, the message waits in its persistent session and comes first."""
    a, b = seals
    settings = server_mqtt_settings(broker, tmp_path)
    start_ingest(settings, session_factory, tmp_path).ingest.stop()  # the session exists, the court is away
    with seal_connection(broker, a.device_id) as conn_a, seal_connection(broker, b.device_id) as conn_b:
        conn_a.client.publish(a.event_topic, a.event(), qos=1, properties=_hostile("user_property")).wait_for_publish(5)
        conn_b.publish(b.event_topic, b.event())
    time.sleep(0.2)
    run = start_ingest(settings, session_factory, tmp_path)
    try:
        run.wait(lambda m: m.stored >= 2, "both events")
    finally:
        run.ingest.stop()
    assert sorted(device for device, _case, _seq in event_rows(session_factory)) == ["seal-a", "seal-b"]


def _publish(topic: bytes, mid: bytes, properties: bytes, payload: bytes) -> bytes:
    return len(topic).to_bytes(2, "big") + topic + mid + properties + payload


def test_the_properties_are_cut_by_their_declared_length() -> None:
    qos1 = 0x32  # PUBLISH, QoS 1
    props = b"\x26\x00\x01k\x00\x03\xef\xbb\xbf"  # a user property ("k", U+FEFF): 9 bytes
    packet = _publish(b"seal/v1/a/event", b"\x00\x07", bytes([len(props)]) + props, b'{"v":1}')
    assert publish_without_properties(qos1, packet) == _publish(b"seal/v1/a/event", b"\x00\x07", b"\x00", b'{"v":1}')
    qos0 = 0x30  # no packet id
    packet = _publish(b"t", b"", b"\x80\x01" + bytes(128), b"x")  # a two-byte length: 128
    assert publish_without_properties(qos0, packet) == _publish(b"t", b"", b"\x00", b"x")


@pytest.mark.parametrize(
    "packet",
    [
        b"",
        b"\x00",
        _publish(b"t", b"\x00\x01", b"\x09", b"short"),  # properties longer than what is left
        _publish(b"t", b"\x00\x01", b"\xff\xff\xff\xff\x01", b""),  # a length of five bytes
        b"\x00\x09t",  # a topic longer than the packet
    ],
)
def test_a_packet_whose_framing_is_broken_is_not_cut(packet: bytes) -> None:
    assert publish_without_properties(0x32, packet) is None


@pytest.mark.parametrize(
    ("properties", "problem"),
    [
        (b"\x06\x03\x00\x03\xef\xbb\xbf", "MalformedPacket"),  # a content type of U+FEFF
        (b"\x08\x03\x00\x01a\x03\x00\x01b", "MQTTException"),  # the content type twice
        (b"\x02\x7f\x00", "KeyError"),  # no such property
    ],
)
def test_whatever_paho_would_raise_on_the_properties_is_caught_before_it(properties: bytes, problem: str) -> None:
    """paho ends the connection on a MalformedPacket, and its network thread on any other exception."""
    packet = _publish(b"t", b"\x00\x01", properties, b"x")
    found = unreadable_properties(0x32, packet)
    assert found is not None and found.startswith(problem)
    assert publish_without_properties(0x32, packet) == _publish(b"t", b"\x00\x01", b"\x00", b"x")


def test_readable_properties_and_none_are_left_alone() -> None:
    assert unreadable_properties(0x32, _publish(b"t", b"\x00\x01", b"\x00", b"x")) is None
    assert unreadable_properties(0x32, _publish(b"t", b"\x00\x01", b"\x05\x03\x00\x02ok", b"x")) is None
