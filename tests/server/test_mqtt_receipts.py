"""The MQTT ingest receipts what it committed, through a real Mosquitto, to the seal's own receipt topic only."""

from __future__ import annotations

import json
import logging
import queue
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from seal_dev.broker import PrivateBroker
from seal_protocol import envelope_hash
from seal_protocol.receipts import check_receipt
from seal_protocol.signing import load_or_create_signing_key
from seal_protocol.topics import receipt_topic
from server.commands.keys import CourtKey
from server.config import CommandSettings
from server.core.db import SessionFactory
from server.core.metrics import IngestMetrics
from server.ingest.ingestor import Ingestor
from server.ingest.mqtt import MqttIngest
from tests.server.helpers import CASE_A, CASE_B, SimulatedSeal, register
from tests.server.mqtt_helpers import seal_connection, server_mqtt_settings

WAIT_S = 30.0


def listen(client: mqtt.Client, topic: str) -> queue.Queue[tuple[str, bytes]]:
    """Subscribe ``client`` to ``topic`` (QoS 1); the messages it gets land in the returned queue."""
    received: queue.Queue[tuple[str, bytes]] = queue.Queue()
    subscribed: queue.Queue[bool] = queue.Queue()
    client.on_message = lambda c, u, m: received.put((m.topic, bytes(m.payload)))
    client.on_subscribe = lambda c, u, mid, rcs, p: subscribed.put(not any(rc.is_failure for rc in rcs))
    client.subscribe(topic, qos=1)
    assert subscribed.get(timeout=WAIT_S)
    return received


def start(broker: PrivateBroker, session_factory: SessionFactory, tmp_path: Path, key: CourtKey | None) -> MqttIngest:
    ingestor = Ingestor(session_factory, metrics=IngestMetrics(), snapshot_dir=tmp_path / "snapshots")
    ingest = MqttIngest(server_mqtt_settings(broker, tmp_path), ingestor, court_key=key)
    ingest.start()
    assert ingest.wait_subscribed(WAIT_S)  # connected, then subscribed: from then on it gets what is sent
    return ingest


def test_each_committed_event_is_receipted_to_its_own_seal_signed_by_the_court(
    broker: PrivateBroker, session_factory: SessionFactory, tmp_path: Path
) -> None:
    court_key, _ = load_or_create_signing_key(tmp_path / "court" / "command.key")
    a, b = SimulatedSeal("seal-a", CASE_A), SimulatedSeal("seal-b", CASE_B)
    register(session_factory, a, b)
    ingest = start(
        broker,
        session_factory,
        tmp_path,
        CourtKey(CommandSettings(signing_key_file=tmp_path / "court" / "command.key")),
    )
    try:
        with seal_connection(broker, "seal-a") as conn_a, seal_connection(broker, "seal-b") as conn_b:
            to_a = listen(conn_a.client, receipt_topic("seal-a"))
            to_b = listen(conn_b.client, "seal/v1/+/receipt")  # granted, but the ACL delivers only its own
            events = [a.event(), a.event()]
            respaced = json.dumps(json.loads(a.event()), indent=1).encode()  # quarantined: never storable
            for data in (*events, respaced):
                conn_a.publish(a.event_topic, data)
            committed: set[str] = set()
            while len(committed) < 3:
                topic, payload = to_a.get(timeout=WAIT_S)
                assert topic == receipt_topic("seal-a")
                receipt = check_receipt(payload, device_id="seal-a", court_key=court_key.verify_key)
                committed |= receipt.committed
            assert committed == {envelope_hash(data) for data in (*events, respaced)}  # quarantined bytes too
            conn_b.publish(b.event_topic, b.event())
            topic, _payload = to_b.get(timeout=WAIT_S)
            assert topic == receipt_topic("seal-b")
            assert to_a.empty() and to_b.empty()
    finally:
        ingest.stop()


def test_without_a_court_key_nothing_is_receipted_and_the_server_says_so(
    broker: PrivateBroker, session_factory: SessionFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    a = SimulatedSeal("seal-a", CASE_A)
    register(session_factory, a)
    with caplog.at_level(logging.WARNING, logger="server.mqtt_ingest"):
        ingest = start(broker, session_factory, tmp_path, CourtKey(CommandSettings()))
    try:
        assert any("no receipts are sent" in r.getMessage() for r in caplog.records)
        with seal_connection(broker, "seal-a") as conn:
            to_a = listen(conn.client, receipt_topic("seal-a"))
            conn.publish(a.event_topic, a.event())
            with pytest.raises(queue.Empty):
                to_a.get(timeout=1.0)
    finally:
        ingest.stop()
