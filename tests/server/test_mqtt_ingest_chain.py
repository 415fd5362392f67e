"""Through a real Mosquitto: a seal's outbox drains after a gap; the missing_events alarm opens, then closes."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select

from seal_dev.broker import PrivateBroker
from seal_protocol import EventType
from server.alarms.models import Alarm
from server.core.db import SessionFactory
from server.core.metrics import IngestMetrics
from server.ingest.ingestor import Ingestor
from server.ingest.mqtt import MqttIngest
from tests.server.helpers import CASE_A, SimulatedSeal, register
from tests.server.mqtt_helpers import seal_connection, server_mqtt_settings
from tests.server.test_mqtt_ingest import WAIT_S, Running, event_rows, start_ingest


def _alarms(session_factory: SessionFactory) -> list[tuple[str, str, object]]:
    with session_factory() as session:
        return [(a.kind, a.state, a.details.get("missing")) for a in session.scalars(select(Alarm).order_by(Alarm.id))]


def test_gap_alarm_opens_and_closes_as_the_outbox_drains(
    broker: PrivateBroker, session_factory: SessionFactory, tmp_path: Path
) -> None:
    seal = SimulatedSeal("seal-a", CASE_A)
    register(session_factory, seal)
    events = [seal.event(EventType.HEARTBEAT) for _ in range(5)]
    running = start_ingest(server_mqtt_settings(broker, tmp_path), session_factory, tmp_path)
    try:
        with seal_connection(broker, seal.device_id) as conn:
            for data in (events[0], events[1], events[4]):
                conn.publish(seal.event_topic, data)
            running.wait(lambda m: m.stored >= 3, "3 events")
            assert _alarms(session_factory) == [("missing_events", "open", [[3, 4]])]

            for data in (events[2], events[3]):  # what the seal's outbox sends after its reconnect
                conn.publish(seal.event_topic, data)
            running.wait(lambda m: m.stored >= 5, "the missing events")
    finally:
        running.ingest.stop()

    assert [seq for _, _, seq in event_rows(session_factory)] == [1, 2, 5, 3, 4]
    [(kind, state, _missing)] = _alarms(session_factory)
    assert (kind, state) == ("missing_events", "closed")


def test_a_real_gap_ends_the_gap_wait_with_the_missing_events_alarm(
    broker: PrivateBroker, session_factory: SessionFactory, tmp_path: Path
) -> None:
    """With ``gap_wait_s`` (shared workers), an event beyond a gap that no worker will fill is held back only that
    long: then it is stored, acknowledged, and the missing_events alarm opens."""
    seal = SimulatedSeal("seal-a", CASE_A)
    register(session_factory, seal)
    events = [seal.event(EventType.HEARTBEAT) for _ in range(3)]
    settings = server_mqtt_settings(broker, tmp_path).model_copy(update={"gap_wait_s": 0.5})
    metrics = IngestMetrics()
    ingest = MqttIngest(settings, Ingestor(session_factory, metrics=metrics, snapshot_dir=tmp_path, gap_wait_s=0.5))
    ingest.start()
    running = Running(ingest, metrics)
    try:
        assert ingest.wait_subscribed(WAIT_S)
        with seal_connection(broker, seal.device_id) as conn:
            conn.publish(seal.event_topic, events[0])
            conn.publish(seal.event_topic, events[2])  # seq 2 is lost for good
            running.wait(lambda m: m.stored >= 2, "the event beyond the gap, after the wait")
    finally:
        ingest.stop()

    assert [seq for _, _, seq in event_rows(session_factory)] == [1, 3]
    assert _alarms(session_factory) == [("missing_events", "open", [[2, 2]])]
