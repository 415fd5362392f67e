"""A seal's MQTT account cannot take a share of the court's ingest through its shared subscription group.

Mosquitto 2.0's ACL file does not refuse a SUBSCRIBE (it checks "read" only when it delivers): a seal that
subscribes to ``$share/<the court's group>/seal/v1/+/event`` joins the group, gets its turn in the round robin, and
the message its ACL keeps from it is lost for the whole group. With a group name the seal could know (the one
``docs/deploy.md`` used to show, ``court-ingest``), the court's ingest received half of another seal's events,
statuses and snapshots. The broker's name of the group now carries a suffix derived from the court's password.
Found by a hostile review."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import paho.mqtt.client as mqtt

from seal_dev.broker import PrivateBroker
from seal_protocol import EventType, encode_status, snapshot_topic
from seal_protocol.status import SealStatus
from seal_protocol.topics import MessageKind, subscription_all
from server.core.db import SessionFactory
from server.core.metrics import IngestMetrics
from server.core.metrics_snapshot import MetricsSnapshot
from server.ingest.ingestor import Ingestor
from server.ingest.mqtt import SUBSCRIBED_KINDS, MqttIngest
from tests.agent.helpers import wait_until
from tests.server.helpers import CASE_A, CASE_B, SimulatedSeal, jpeg_bytes, register
from tests.server.mqtt_helpers import seal_connection, server_mqtt_settings

EACH = 10
WAIT_S = 20.0
GROUP = "court-ingest"  # the name docs/deploy.md once told every court to set


def _handled(snap: MetricsSnapshot) -> int:
    """Every message the court's ingest took, whatever became of it."""
    return snap.stored + snap.duplicates + snap.status_updates + snap.snapshots + snap.rejected_total + snap.ignored


def test_a_seal_that_names_the_court_s_group_takes_no_share_of_its_ingest(
    broker: PrivateBroker, session_factory: SessionFactory, tmp_path: Path
) -> None:
    victim, thief = SimulatedSeal("seal-victim", CASE_A), SimulatedSeal("seal-thief", CASE_B)
    register(session_factory, victim, thief)
    settings = server_mqtt_settings(broker, tmp_path).model_copy(update={"shared_group": GROUP, "gap_wait_s": 1.0})
    metrics = IngestMetrics()
    ingest = MqttIngest(settings, Ingestor(session_factory, metrics=metrics, snapshot_dir=tmp_path / "snapshots"))
    ingest.start()
    try:
        assert ingest.wait_subscribed(WAIT_S), "the court's shared subscriptions were not granted"
        with seal_connection(broker, thief.device_id) as thief_conn, seal_connection(broker, victim.device_id) as conn:
            granted: list[object] = []
            heard: list[str] = []
            thief_conn.client.on_subscribe = lambda _c, _u, _mid, codes, _p: granted.append(codes)
            thief_conn.client.on_message = lambda _c, _u, msg: heard.append(msg.topic)
            assert set(SUBSCRIBED_KINDS) == {MessageKind.EVENT, MessageKind.STATUS, MessageKind.SNAPSHOT}
            for kind in SUBSCRIBED_KINDS:
                thief_conn.client.subscribe(f"$share/{GROUP}/{subscription_all(kind)}", qos=1)
            assert wait_until(lambda: len(granted) == len(SUBSCRIBED_KINDS), WAIT_S), "the thief's subscribe"
            time.sleep(0.2)

            sent: list[mqtt.MQTTMessageInfo] = []
            for i in range(EACH):
                sent.append(conn.client.publish(victim.event_topic, victim.event(EventType.HEARTBEAT), qos=1))
                sent.append(conn.client.publish(victim.status_topic, encode_status(SealStatus.ONLINE), qos=1))
                jpeg = jpeg_bytes(shade=i)
                topic = snapshot_topic(victim.device_id, hashlib.sha256(jpeg).hexdigest())
                sent.append(conn.client.publish(topic, jpeg, qos=1))
            for info in sent:
                info.wait_for_publish(WAIT_S)
            wait_until(lambda: _handled(metrics.snapshot()) >= 3 * EACH, WAIT_S)
            time.sleep(0.5)  # nothing more arrives: no copy came twice
    finally:
        ingest.stop()
    snap = metrics.snapshot()
    assert heard == []  # the ACL keeps the bytes from the thief (it always did) ...
    got = (snap.stored + snap.duplicates, snap.status_updates, snap.snapshots + snap.rejected_total)
    assert got == (EACH, EACH, EACH), f"... and the court's ingest must take every message: {snap}"
