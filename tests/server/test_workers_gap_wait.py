"""``[mqtt] gap_wait_s`` with workers sharing one stream: an event beyond a gap waits for its predecessor while its
seal's chain is still moving (another worker storing the events in between), not only ``gap_wait_s`` from its
receipt, so a burst split between workers raises no ``missing_events`` alarm; a real gap still does, within a
bound."""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from seal_dev.broker import PrivateBroker
from seal_protocol import EventType
from server.alarms.models import Alarm
from server.core.db import SessionFactory, make_engine, make_session_factory
from server.core.metrics import IngestMetrics
from server.evidence.models import Event
from server.ingest.gap_wait import GAP_WAIT_CAP
from server.ingest.ingestor import Ingestor
from server.ingest.models import QuarantinedMessage
from server.ingest.mqtt import MqttIngest
from server.ingest.results import Message, Outcome
from tests.server.helpers import CASE_A, SimulatedSeal, message, register
from tests.server.ingest_world import Court, make_court
from tests.server.mqtt_helpers import seal_connection, server_mqtt_settings

EVENTS = 60
GAP_WAIT_S = 1.0  # the deploy guide's
#: The unit test's wait: long enough that the chain it just moved still counts as moving on a slow machine.
LONG_WAIT_S = 30.0
WAIT_S = 60.0


def received_ago(message: Message, seconds: float) -> Message:
    """``message`` as if received ``seconds`` ago, on both clocks."""
    at = message.received_at - timedelta(seconds=seconds)
    return replace(message, received_at=at, received_mono=message.received_mono - seconds)


@pytest.fixture
def court(session_factory: SessionFactory, tmp_path: Path) -> Court:
    return make_court(session_factory, tmp_path)


def test_an_event_waits_while_its_chain_moves_and_no_longer_than_the_cap(court: Court, tmp_path: Path) -> None:
    """The chain moved just now (seq 1 stored): seq 3, received longer than ``gap_wait_s`` ago, still waits; once
    it was received more than ``GAP_WAIT_CAP`` × ``gap_wait_s`` ago it is stored beyond the gap whatever the chain
    does."""
    ingestor = Ingestor(court.session_factory, metrics=IngestMetrics(), snapshot_dir=tmp_path, gap_wait_s=LONG_WAIT_S)
    events = [court.a.event() for _ in range(3)]
    ingestor.ingest([message(court.a.event_topic, events[0])])
    third = message(court.a.event_topic, events[2])

    waited = received_ago(third, 2 * LONG_WAIT_S)
    assert [r.outcome for r in ingestor.ingest([waited])] == [Outcome.DEFERRED]
    assert court.alarms() == []

    too_long = received_ago(third, (GAP_WAIT_CAP + 1) * LONG_WAIT_S)
    assert [r.outcome for r in ingestor.ingest([too_long])] == [Outcome.STORED]
    [alarm] = court.alarms()
    assert (alarm.kind, alarm.details["missing"]) == ("missing_events", [[2, 2]])


def test_the_wait_is_measured_on_the_monotonic_clock(court: Court, tmp_path: Path) -> None:
    """A step of the court's wall clock neither stretches nor cuts the wait of an event beyond a gap: stepped back an
    hour after its receipt (its ``received_at`` an hour ahead of the clock), an event received longer than the cap ago
    is stored beyond the gap, not held for the hour; stepped forward an hour, one received just now still waits.
    (Measured on the wall clock, the first was held, unacknowledged and verified again every 50 ms, for the hour, and
    the second stored beyond the gap at once.)"""
    ingestor = Ingestor(court.session_factory, metrics=IngestMetrics(), snapshot_dir=tmp_path, gap_wait_s=LONG_WAIT_S)
    events = [court.a.event() for _ in range(3)]
    ingestor.ingest([message(court.a.event_topic, events[0])])
    third = message(court.a.event_topic, events[2])

    forward = replace(third, received_at=third.received_at - timedelta(hours=1))  # the clock stepped forward since
    assert [r.outcome for r in ingestor.ingest([forward])] == [Outcome.DEFERRED]
    assert court.alarms() == []

    long_ago = third.received_mono - (GAP_WAIT_CAP + 1) * LONG_WAIT_S
    back = replace(third, received_at=third.received_at + timedelta(hours=1), received_mono=long_ago)
    assert [r.outcome for r in ingestor.ingest([back])] == [Outcome.STORED]
    [alarm] = court.alarms()
    assert (alarm.kind, alarm.details["missing"]) == ("missing_events", [[2, 2]])


def test_a_burst_of_one_seal_split_between_two_workers_raises_no_missing_events(
    broker: PrivateBroker, database_url: str, session_factory: SessionFactory, tmp_path: Path
) -> None:
    """One seal drains 60 events at once; the broker hands consecutive seqs to the two workers in turn, each of which
    can store only the seq after the head, so the chain moves one seq per retry round and the later events wait
    longer than ``gap_wait_s`` (1 s) from their receipt. Before, they were stored "beyond a gap" after 1 s, and
    ``missing_events`` opened (with its notifications) and closed again."""
    seal = SimulatedSeal("seal-a", CASE_A)
    register(session_factory, seal)
    settings = server_mqtt_settings(broker, tmp_path).model_copy(
        update={"shared_group": "court-ingest", "gap_wait_s": GAP_WAIT_S, "batch_size": 500}
    )
    engines, workers = [], []
    try:
        for role in ("w1", "w2"):
            engine = make_engine(database_url)  # each worker its own connections, as another process would
            engines.append(engine)
            factory = make_session_factory(engine)
            ingestor = Ingestor(factory, metrics=IngestMetrics(), snapshot_dir=tmp_path / "s", gap_wait_s=GAP_WAIT_S)
            worker = MqttIngest(settings, ingestor, role=role)
            worker.start()
            assert worker.wait_subscribed(WAIT_S), f"worker {role} did not subscribe"
            workers.append(worker)
        events = [seal.event(EventType.HEARTBEAT) for _ in range(EVENTS)]
        with seal_connection(broker, seal.device_id) as conn:
            for info in [conn.client.publish(seal.event_topic, event, qos=1) for event in events]:
                info.wait_for_publish(WAIT_S)
            deadline = time.monotonic() + WAIT_S
            while _stored(session_factory) < EVENTS:
                assert time.monotonic() < deadline, f"only {_stored(session_factory)} of {EVENTS} events stored"
                time.sleep(0.05)
    finally:
        for worker in workers:
            worker.stop()
        for engine in engines:
            engine.dispose()

    shares = [worker.ingestor.metrics.snapshot().stored for worker in workers]
    assert sum(shares) == EVENTS and all(shares), shares
    with session_factory() as session:
        assert session.scalar(select(func.count()).select_from(QuarantinedMessage)) == 0
        alarms = list(session.execute(select(Alarm.kind, Alarm.details)))
    assert [a for a in alarms if a[0] == "missing_events"] == [], "missing_events raised for gaps that never were"


def _stored(session_factory: SessionFactory) -> int:
    with session_factory() as session:
        return session.scalar(select(func.count()).select_from(Event)) or 0
