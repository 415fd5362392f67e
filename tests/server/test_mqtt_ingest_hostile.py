"""Hostile messages from a seal's own broker account, through a real Mosquitto into the running ingest: each one
affects that message only — refused with its reason, logged and counted — and the seals' events around it are
stored (the other hostile shapes: ``test_mqtt_ingest.py``, ``test_ingest.py``, ``tests/reliability/test_fuzz.py``)."""

from __future__ import annotations

import hashlib
import io
import logging
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from PIL import Image
from sqlalchemy import select

from seal_dev.broker import PrivateBroker
from seal_protocol import EventType, snapshot_topic
from server.core.db import SessionFactory, make_engine, make_session_factory
from server.core.metrics import IngestMetrics
from server.evidence.models import Snapshot
from server.ingest.ingestor import Ingestor
from server.ingest.models import QuarantinedMessage
from server.ingest.mqtt import MqttIngest
from tests.server.helpers import CASE_A, SimulatedSeal, bring_back, register
from tests.server.mqtt_helpers import seal_connection, server_mqtt_settings, wait_for_log
from tests.server.test_mqtt_ingest import WAIT_S, Running, event_rows, start_ingest


@pytest.fixture
def seal(session_factory: SessionFactory) -> SimulatedSeal:
    a = SimulatedSeal("seal-a", CASE_A)
    register(session_factory, a)
    return a


@pytest.fixture
def running(broker: PrivateBroker, session_factory: SessionFactory, tmp_path: Path) -> Iterator[Running]:
    run = start_ingest(server_mqtt_settings(broker, tmp_path), session_factory, tmp_path)
    try:
        yield run
    finally:
        run.ingest.stop()


def camera_jpeg(*, progressive: bool = False, extra_scans: int = 0) -> bytes:
    """A real JPEG (Pillow's: one scan, or ten if progressive), with its smallest scan repeated ``extra_scans`` more
    times before the end marker: libjpeg decodes every scan again over the whole picture (a repeated one is only a
    warning), so the time a picture takes to decode grows with its scans, not with its bytes."""
    out = io.BytesIO()
    Image.new("RGB", (64, 48), (90, 120, 150)).save(out, "JPEG", progressive=progressive)
    data = out.getvalue()
    starts = [i for i in range(len(data) - 1) if data[i : i + 2] == b"\xff\xda"]
    ends = [*starts[1:], len(data) - 2]
    smallest = min((data[s:e] for s, e in zip(starts, ends, strict=True)), key=len)
    return data[:-2] + smallest * extra_scans + b"\xff\xd9"


@pytest.mark.parametrize(
    ("hostile", "said"),
    [
        (camera_jpeg(extra_scans=3), "4 scans"),  # a sequential picture codes each component once
        (camera_jpeg(progressive=True, extra_scans=2000), "progressive"),
        (camera_jpeg(progressive=True), "progressive"),  # honest, but ten scans cost 6x a sequential picture's bytes
    ],
    ids=["scans", "progressive-scans", "progressive"],
)
def test_a_picture_costly_to_decode_is_refused_and_the_events_around_it_are_stored(
    broker: PrivateBroker,
    running: Running,
    seal: SimulatedSeal,
    session_factory: SessionFactory,
    hostile: bytes,
    said: str,
) -> None:
    """A few hundred KiB of repeated scans of a 40-megapixel picture held the ingest of every seal for minutes while
    it was decoded, and then was stored as a snapshot; an honest 8 MiB progressive picture held it for a second. A
    camera's JPEG is sequential, one scan: only such pictures are taken (bench/snapshot_check.py)."""
    camera = camera_jpeg()
    hostile_sha, camera_sha = hashlib.sha256(hostile).hexdigest(), hashlib.sha256(camera).hexdigest()
    with seal_connection(broker, seal.device_id) as conn:
        conn.publish(seal.event_topic, seal.event())
        conn.publish(snapshot_topic(seal.device_id, hostile_sha), hostile)
        conn.publish(snapshot_topic(seal.device_id, camera_sha), camera)
        conn.publish(seal.event_topic, seal.event(EventType.INTRUSION, {"snapshots": [camera_sha]}))
        snap = running.wait(lambda m: m.stored + m.snapshots + m.rejected_total >= 4, "the four messages")

    assert (snap.stored, snap.snapshots, snap.rejected) == (2, 1, {"invalid_snapshot": 1})
    assert [seq for _d, _c, seq in event_rows(session_factory)] == [1, 2]
    with session_factory() as session:
        assert list(session.scalars(select(Snapshot.sha256))) == [camera_sha]
        [refused] = session.scalars(select(QuarantinedMessage))
    assert (refused.reason, refused.sha256) == ("invalid_snapshot", hostile_sha)
    assert said in refused.detail


def test_mqtt_properties_larger_than_a_topic_never_reach_the_court(
    broker: PrivateBroker, running: Running, seal: SimulatedSeal, session_factory: SessionFactory
) -> None:
    """MQTT v5 user properties travel with a message to its subscribers, and the broker's limit on a message
    (``message_size_limit``) counts its payload only: a seal's event with megabytes of them (256 MiB are possible)
    was kept by the broker and handed to the court whole. The broker now refuses a packet larger than a snapshot
    with its topic (and closes that connection, as for a payload too large); the court gets the seal's next one."""
    refused, later = seal.event(), seal.event()
    properties = Properties(PacketTypes.PUBLISH)
    properties.UserProperty = [("note", "x" * 65_000)] * 160  # 10 MB
    with seal_connection(broker, seal.device_id) as conn:
        closed = threading.Event()
        conn.client.on_disconnect = lambda *_args: closed.set()
        info = conn.client.publish(seal.event_topic, refused, qos=1, properties=properties)
        assert closed.wait(WAIT_S), "the broker took the message"  # refused: no PUBACK, the connection closed
        assert not info.is_published()
    with seal_connection(broker, seal.device_id) as conn:
        small = Properties(PacketTypes.PUBLISH)
        small.UserProperty = [("note", "x" * 1000)]
        conn.client.publish(seal.event_topic, later, qos=1, properties=small).wait_for_publish(5)
        snap = running.wait(lambda m: m.stored + m.rejected_total >= 1, "the next event")

    assert (snap.stored, snap.rejected) == (1, {})
    assert [seq for _d, _c, seq in event_rows(session_factory)] == [2]


def test_messages_at_qos_0_beyond_a_bound_are_dropped_and_counted_never_piled_up(
    broker: PrivateBroker, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A seal publishes at QoS 1 and nobody acknowledges a message at QoS 0: the broker sends each at once, however
    many the court holds unstored, and paho's thread takes them as fast as they come. A seal's account publishing at
    QoS 0 filled the court's memory faster than the ingest stored (800 MB in 8 s, one publisher): past its bound
    the ingest now drops such a message, counts it and says so. Here the database does not answer, so nothing is
    stored meanwhile; the event at QoS 1 waits, and is stored once it does."""
    database = make_engine(f"sqlite:///{tmp_path / 'not-yet.db'}")  # no tables yet: storing fails and is retried
    factory = make_session_factory(database)
    seal = SimulatedSeal("seal-a", CASE_A)
    metrics = IngestMetrics()
    ingestor = Ingestor(factory, metrics=metrics, snapshot_dir=tmp_path / "snapshots")
    ingest = MqttIngest(server_mqtt_settings(broker, tmp_path), ingestor, qos0_backlog_bytes=100_000)
    caplog.set_level(logging.INFO, logger="server.ingest")
    ingest.start()
    try:
        assert ingest.wait_subscribed(WAIT_S)
        with seal_connection(broker, seal.device_id) as conn:
            event = seal.event()
            conn.publish(seal.event_topic, event)
            assert wait_for_log(caplog, lambda r: r.getMessage().startswith("cannot store"), WAIT_S)
            for n in range(20):
                conn.client.publish(seal.event_topic, b"not json %d" % n + b" " * 50_000, qos=0)
            assert metrics.wait_until(lambda m: m.dropped >= 19, WAIT_S), metrics.snapshot()
            assert ingest.progress().unstored == 2  # the event, and the one message at QoS 0 within the bound
            bring_back(tmp_path / "not-yet.db", seal)  # the database answers, the seal registered, at once
            snap = Running(ingest, metrics).wait(lambda m: m.stored + m.rejected_total >= 2, "what was held")
            if snap.stored == 0 and snap.rejected.get("storage_error"):
                # A retry begun before the tables appeared met them there half-way through (its read of the seals
                # failed, its quarantine row did not): the event is quarantined unreceipted as a storage error, and
                # the seal, never receipted, sends it again — as here.
                conn.publish(seal.event_topic, event)
                snap = Running(ingest, metrics).wait(lambda m: m.stored >= 1, "the event sent again")
    finally:
        ingest.stop()
        database.dispose()
    refused = {reason: n for reason, n in snap.rejected.items() if reason != "storage_error"}
    assert (snap.stored, refused, snap.dropped) == (1, {"invalid_json": 1}, 19)
    assert snap.rejected.get("storage_error", 0) <= 1
    assert ingest.progress().unstored == 0
    assert any("dropped" in r.getMessage() and "QoS 0" in r.getMessage() for r in caplog.records)


def test_empty_messages_at_qos_0_on_long_topics_are_bounded_too(broker: PrivateBroker, tmp_path: Path) -> None:
    """The bound counts what a message held costs, not its payload alone: empty messages on snapshot topics of
    60,000 characters (a seal's account may name any) are held as their topics, and are dropped past the bound."""
    database = make_engine(f"sqlite:///{tmp_path / 'not-yet.db'}")  # no tables: nothing is stored meanwhile
    seal = SimulatedSeal("seal-a", CASE_A)
    metrics = IngestMetrics()
    ingestor = Ingestor(make_session_factory(database), metrics=metrics, snapshot_dir=tmp_path / "snapshots")
    ingest = MqttIngest(server_mqtt_settings(broker, tmp_path), ingestor, qos0_backlog_bytes=2_000_000)
    ingest.start()
    try:
        assert ingest.wait_subscribed(WAIT_S)
        prefix = snapshot_topic(seal.device_id, "0" * 64)[:-64]  # the ACL lets a seal name any last level
        with seal_connection(broker, seal.device_id) as conn:
            for n in range(20):
                conn.client.publish(prefix + f"{n:02d}" + "f" * 60_000, b"", qos=0)
            assert metrics.wait_until(lambda m: m.dropped >= 12, WAIT_S), metrics.snapshot()
            assert ingest.progress().unstored == 20 - metrics.snapshot().dropped  # 240 KB each: 8 held at most
    finally:
        ingest.stop()
        database.dispose()


def test_a_topic_of_64_kib_gets_its_quarantine_row_and_a_log_line_of_a_few_kib(
    broker: PrivateBroker,
    running: Running,
    seal: SimulatedSeal,
    session_factory: SessionFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The ACL lets a seal write any last level under its ``snapshot`` topic, up to MQTT's 65,535 bytes. The refusal
    named the topic twice in full in its log line: 120 KB of log for a message of three bytes. The line says what the
    quarantine row keeps (its topic and detail cut to their columns), and the row is there."""
    caplog.set_level(logging.INFO, logger="server.ingest")
    topic = snapshot_topic(seal.device_id, "0" * 64).removesuffix("0" * 64) + "é" * 32_000
    with seal_connection(broker, seal.device_id) as conn:
        conn.publish(topic, b"abc")
        conn.publish(seal.event_topic, seal.event())
        snap = running.wait(lambda m: m.stored + m.rejected_total >= 2, "both messages")

    assert (snap.stored, snap.rejected) == (1, {"invalid_topic": 1})
    with session_factory() as session:
        [row] = session.scalars(select(QuarantinedMessage))
    assert (row.reason, row.size, row.raw) == ("invalid_topic", 3, b"abc")
    assert row.topic.startswith(topic[:100])
    [line] = [r.getMessage() for r in caplog.records if r.getMessage().startswith("quarantined a message")]
    assert "invalid_topic" in line and len(line) < 4096, len(line)
