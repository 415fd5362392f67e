"""Through a real Mosquitto: a seal's outbox drains after a gap; the missing_events alarm opens, then closes."""

from __future__ import annotations

import secrets
from pathlib import Path

from sqlalchemy import func, select

from seal_dev.broker import PrivateBroker
from seal_protocol import EventType
from server.alarms.models import Alarm
from server.core.db import SessionFactory
from server.core.metrics import IngestMetrics
from server.evidence.models import Event
from server.ingest.ingestor import Ingestor
from server.ingest.liveness import LivenessChecker
from server.ingest.models import QuarantinedMessage
from server.ingest.mqtt import MqttIngest
from server.seals.broker_files import SERVER_USERNAME
from tests.agent.helpers import wait_until
from tests.server.helpers import CASE_A, CASE_B, SimulatedSeal, register
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


def test_a_real_gap_raises_missing_events_after_the_gap_wait(
    broker: PrivateBroker, session_factory: SessionFactory, tmp_path: Path
) -> None:
    """With ``gap_wait_s`` (shared workers), an event beyond a gap that no worker will fill is stored and
    acknowledged at once; the missing_events alarm opens once the gap is that old (the liveness check's round: no
    more events come)."""
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
            running.wait(lambda m: m.stored >= 2, "the event beyond the gap")
            checker = LivenessChecker(session_factory, offline_after_s=3600, interval_s=60, gap_wait_s=0.5)
            assert wait_until(lambda: checker.check() == [seal.device_id], WAIT_S), "no missing_events"
    finally:
        ingest.stop()

    assert [seq for _, _, seq in event_rows(session_factory)] == [1, 3]
    assert _alarms(session_factory) == [("missing_events", "open", [[2, 2]])]


WINDOW = 20  # the broker's in-flight window to the court (max_inflight_messages), small enough to fill
GAP_WAIT_S = 2 * WAIT_S  # the long wait for a missing event: the test's waits run out well before it
BEYOND_GAP = 2 * WINDOW


def _stored_seqs(session_factory: SessionFactory, device_id: str) -> list[int]:
    with session_factory() as session:
        return sorted(session.scalars(select(Event.seq).where(Event.device_id == device_id)))


def test_events_beyond_a_gap_cannot_fill_the_in_flight_window(session_factory: SessionFactory, tmp_path: Path) -> None:
    """A seal draining more than the broker's in-flight window beyond a gap, with a long ``gap_wait_s``: every event
    is stored and acknowledged at once (nothing is held back), so another seal's events are stored at once, not
    after ``gap_wait_s``; the missing one, sent again, closes the gap before it is old enough to raise an alarm."""
    a, b = SimulatedSeal("seal-a", CASE_A), SimulatedSeal("seal-b", CASE_B)
    register(session_factory, a, b)
    events_a = [a.event(EventType.HEARTBEAT) for _ in range(BEYOND_GAP + 2)]
    events_b = [b.event(EventType.HEARTBEAT) for _ in range(5)]
    account = {SERVER_USERNAME: secrets.token_urlsafe(16)}
    broker = PrivateBroker(tmp_path / "broker", account, max_inflight_messages=WINDOW)
    broker.start()
    settings = server_mqtt_settings(broker, tmp_path).model_copy(update={"gap_wait_s": GAP_WAIT_S})
    metrics = IngestMetrics()
    ingestor = Ingestor(session_factory, metrics=metrics, snapshot_dir=tmp_path, gap_wait_s=GAP_WAIT_S)
    ingest = MqttIngest(settings, ingestor)
    ingest.start()
    running = Running(ingest, metrics)
    try:
        assert ingest.wait_subscribed(WAIT_S)
        with seal_connection(broker, a.device_id) as conn_a, seal_connection(broker, b.device_id) as conn_b:
            conn_a.publish(a.event_topic, events_a[0])
            running.wait(lambda m: m.stored >= 1, "seq 1")
            for data in events_a[2:]:  # seq 2 is missing: every one of these is beyond the gap
                conn_a.publish(a.event_topic, data)
            for data in events_b:
                conn_b.publish(b.event_topic, data)
            # Held back, the events beyond the gap filled the window for gap_wait_s (longer than this wait's own
            # limit): nothing else reached the ingest meanwhile, and this wait ran out.
            running.wait(lambda m: m.stored >= 1 + BEYOND_GAP + 5, "every event beyond the gap and the other seal's")
            assert _stored_seqs(session_factory, b.device_id) == [1, 2, 3, 4, 5]
            assert _alarms(session_factory) == []  # the gap is younger than gap_wait_s

            conn_a.publish(a.event_topic, events_a[1])  # the seal's outbox sends the missing one after all
            running.wait(lambda m: m.stored >= 2 + BEYOND_GAP + 5, "the missing event")
    finally:
        ingest.stop()
        broker.stop()

    assert _stored_seqs(session_factory, a.device_id) == list(range(1, BEYOND_GAP + 3)), "an event was lost"
    assert _alarms(session_factory) == []
    with session_factory() as session:
        assert session.scalar(select(func.count()).select_from(QuarantinedMessage)) == 0
