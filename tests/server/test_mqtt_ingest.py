"""The MQTT ingest against a real, authenticated Mosquitto: seals publish signed events, rows appear."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from sqlalchemy import select

from seal_dev.broker import PrivateBroker
from seal_protocol import EventType, encode_status, snapshot_topic
from seal_protocol.signing import generate_signing_key
from seal_protocol.status import SealStatus
from server.config import MqttSettings
from server.core.db import SessionFactory, make_engine, make_session_factory
from server.core.metrics import IngestMetrics
from server.core.metrics_snapshot import MetricsSnapshot
from server.evidence.models import Event
from server.evidence.snapshot_files import MAX_SNAPSHOT_BYTES
from server.ingest.ingestor import Ingestor
from server.ingest.models import QuarantinedMessage
from server.ingest.mqtt import MqttIngest
from server.migrations.run import init_db
from server.seals.broker_files import SERVER_USERNAME
from server.seals.models import Seal
from tests.server.helpers import CASE_A, CASE_B, SimulatedSeal, bring_back, register
from tests.server.mqtt_helpers import seal_connection, server_mqtt_settings, wait_for_log

WAIT_S = 30.0


@dataclass
class Running:
    ingest: MqttIngest
    metrics: IngestMetrics

    def wait(self, predicate: Callable[[MetricsSnapshot], bool], what: str) -> MetricsSnapshot:
        assert self.metrics.wait_until(predicate, WAIT_S), f"timed out waiting for {what}: {self.metrics.snapshot()}"
        return self.metrics.snapshot()


def start_ingest(settings: MqttSettings, session_factory: SessionFactory, tmp_path: Path) -> Running:
    metrics = IngestMetrics()
    ingest = MqttIngest(settings, Ingestor(session_factory, metrics=metrics, snapshot_dir=tmp_path / "snapshots"))
    ingest.start()
    assert ingest.wait_subscribed(WAIT_S), "the ingest did not subscribe"  # connected, then subscribed
    return Running(ingest, metrics)


@pytest.fixture
def seals(session_factory: SessionFactory) -> tuple[SimulatedSeal, SimulatedSeal]:
    a, b = SimulatedSeal("seal-a", CASE_A), SimulatedSeal("seal-b", CASE_B)
    register(session_factory, a, b)
    return a, b


@pytest.fixture
def running(broker: PrivateBroker, session_factory: SessionFactory, tmp_path: Path) -> Iterator[Running]:
    run = start_ingest(server_mqtt_settings(broker, tmp_path), session_factory, tmp_path)
    try:
        yield run
    finally:
        run.ingest.stop()


def event_rows(session_factory: SessionFactory) -> list[tuple[str, str, int]]:
    """The stored events, each seal's in the order stored (the seals' turns in a batch are the court's own)."""
    with session_factory() as session:
        order = (Event.device_id, Event.id)
        return [(e.device_id, e.case_no, e.seq) for e in session.scalars(select(Event).order_by(*order))]


def test_published_events_are_stored_in_their_cases(
    broker: PrivateBroker, running: Running, seals: tuple[SimulatedSeal, SimulatedSeal], session_factory: SessionFactory
) -> None:
    a, b = seals
    with seal_connection(broker, a.device_id) as conn_a, seal_connection(broker, b.device_id) as conn_b:
        for _ in range(3):
            conn_a.publish(a.event_topic, a.event(EventType.INTRUSION, {"warning": "played"}))
        conn_b.publish(b.event_topic, b.event())
        running.wait(lambda m: m.stored >= 4, "4 events")

    assert event_rows(session_factory) == [
        ("seal-a", CASE_A, 1),
        ("seal-a", CASE_A, 2),
        ("seal-a", CASE_A, 3),
        ("seal-b", CASE_B, 1),
    ]
    assert running.ingest.connected


def test_duplicate_publish_gives_one_row(
    broker: PrivateBroker, running: Running, seals: tuple[SimulatedSeal, SimulatedSeal], session_factory: SessionFactory
) -> None:
    a, _ = seals
    data = a.event()
    with seal_connection(broker, a.device_id) as conn:
        conn.publish(a.event_topic, data)
        conn.publish(a.event_topic, data)  # what a seal does when its PUBACK was lost
        snap = running.wait(lambda m: m.stored + m.duplicates >= 2, "both copies")

    assert (snap.stored, snap.duplicates) == (1, 1)
    assert event_rows(session_factory) == [("seal-a", CASE_A, 1)]


def test_bad_messages_do_not_stop_the_ingest(
    broker: PrivateBroker, running: Running, seals: tuple[SimulatedSeal, SimulatedSeal], session_factory: SessionFactory
) -> None:
    a, _ = seals
    with seal_connection(broker, a.device_id) as conn:
        conn.publish(a.event_topic, b"\x00\xffnot json")
        conn.publish(a.event_topic, a.event(key=generate_signing_key()))
        conn.publish(a.event_topic, a.event(EventType.TAMPER))
        snap = running.wait(lambda m: m.stored >= 1 and m.rejected_total >= 2, "2 rejections and 1 event")

    assert snap.rejected == {"invalid_utf8": 1, "bad_signature": 1}
    assert event_rows(session_factory) == [("seal-a", CASE_A, 2)]
    with session_factory() as session:
        reasons = sorted(q.reason for q in session.scalars(select(QuarantinedMessage)))
    assert reasons == ["bad_signature", "invalid_utf8"]


def test_retained_status_updates_the_seal(
    broker: PrivateBroker, running: Running, seals: tuple[SimulatedSeal, SimulatedSeal], session_factory: SessionFactory
) -> None:
    a, _ = seals
    with seal_connection(broker, a.device_id) as conn:
        conn.publish(a.status_topic, encode_status(SealStatus.ONLINE), retain=True)
        running.wait(lambda m: m.status_updates >= 1, "the status")
    with session_factory() as session:
        seal = session.scalar(select(Seal).where(Seal.device_id == "seal-a"))
        assert seal is not None and seal.status == "online"


def test_messages_sent_while_the_server_is_away_arrive_once(
    broker: PrivateBroker, seals: tuple[SimulatedSeal, SimulatedSeal], session_factory: SessionFactory, tmp_path: Path
) -> None:
    a, _ = seals
    settings = server_mqtt_settings(broker, tmp_path)
    first = start_ingest(settings, session_factory, tmp_path)
    with seal_connection(broker, a.device_id) as conn:
        conn.publish(a.event_topic, a.event())
        first.wait(lambda m: m.stored >= 1, "the first event")
        first.ingest.stop()

        conn.publish(a.event_topic, a.event())  # the broker keeps it in the server's persistent session
        second = start_ingest(settings, session_factory, tmp_path)
        try:
            snap = second.wait(lambda m: m.stored >= 1, "the event sent while away")
        finally:
            second.ingest.stop()

    assert snap.duplicates == 0, "the first run's acknowledgements were lost at stop"
    assert event_rows(session_factory) == [("seal-a", CASE_A, 1), ("seal-a", CASE_A, 2)]


def test_messages_are_acknowledged_only_after_commit(
    broker: PrivateBroker, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """While the database cannot store, nothing is acknowledged: a restarted server gets every message again.

    SQLite only: it needs a database whose tables are missing at first.
    """
    broken = make_engine(f"sqlite:///{tmp_path / 'not-initialised.db'}")
    settings = server_mqtt_settings(broker, tmp_path)
    a = SimulatedSeal("seal-a", CASE_A)
    caplog.set_level(logging.ERROR, logger="server.mqtt_ingest")
    try:
        first = start_ingest(settings, make_session_factory(broken), tmp_path)
        with seal_connection(broker, a.device_id) as conn:
            conn.publish(a.event_topic, a.event())
            conn.publish(a.event_topic, a.event())
            assert wait_for_log(caplog, lambda r: r.getMessage().startswith("cannot store"), WAIT_S)
            first.ingest.stop()
        assert first.metrics.snapshot().stored == 0

        init_db(broken)
        factory = make_session_factory(broken)
        register(factory, a)
        second = start_ingest(settings, factory, tmp_path)
        try:
            second.wait(lambda m: m.stored >= 2, "the redelivered events")
        finally:
            second.ingest.stop()
        assert event_rows(factory) == [("seal-a", CASE_A, 1), ("seal-a", CASE_A, 2)]
    finally:
        broken.dispose()


def test_refused_login_is_not_connected(
    broker: PrivateBroker, session_factory: SessionFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="server")
    settings = server_mqtt_settings(broker, tmp_path, password="wrong-password")
    ingest = MqttIngest(settings, Ingestor(session_factory, metrics=IngestMetrics(), snapshot_dir=tmp_path / "s"))
    ingest.start()
    try:
        assert wait_for_log(caplog, lambda r: "refused the connection" in r.getMessage(), WAIT_S)
        time.sleep(4)  # paho tries again after 1 and 2 s more: each refusal is not one more error
        errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
        assert len(errors) == 1, errors
        assert f"127.0.0.1:{broker.port}" in errors[0] and SERVER_USERNAME in errors[0]
        assert not ingest.connected
    finally:
        ingest.stop()


def test_a_poison_message_is_quarantined_acknowledged_and_never_comes_back(
    broker: PrivateBroker, seals: tuple[SimulatedSeal, SimulatedSeal], session_factory: SessionFactory, tmp_path: Path
) -> None:
    """Messages that once halted every seal's ingest for good: a lone surrogate and a boolean seq, validly signed
    by the seal's own key, and a status that is not one. The seals' events around them are stored, and after a
    restart the broker has nothing left to redeliver."""
    a, b = seals
    chain = (a.seq, a.prev_hash)
    body = json.loads(a.event())
    a.seq, a.prev_hash = chain  # the next real event takes this place in the chain
    del body["sig"]
    body["payload"] = {"note": "\ud800"}
    raw_body = json.dumps(body, sort_keys=True, separators=(",", ":"))
    body["sig"] = a.key.sign(raw_body.encode("utf-8", "surrogatepass")).signature.hex()
    surrogate = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    settings = server_mqtt_settings(broker, tmp_path)
    first = start_ingest(settings, session_factory, tmp_path)
    try:
        with seal_connection(broker, a.device_id) as conn_a, seal_connection(broker, b.device_id) as conn_b:
            conn_a.publish(a.event_topic, surrogate)
            conn_a.publish(a.status_topic, b'{"state":"online","ts":{"nested":[1,2]},"agent_version":null}')
            conn_a.publish(a.event_topic, a.event(EventType.TAMPER))
            conn_b.publish(b.event_topic, b.event())
            snap = first.wait(lambda m: m.stored >= 2 and m.rejected_total >= 2, "2 events and 2 rejections")
    finally:
        first.ingest.stop()
    assert snap.rejected == {"invalid_json": 1, "invalid_status": 1}
    assert sorted(event_rows(session_factory)) == [("seal-a", CASE_A, 1), ("seal-b", CASE_B, 1)]

    second = start_ingest(settings, session_factory, tmp_path)
    try:
        with seal_connection(broker, b.device_id) as conn_b:
            conn_b.publish(b.event_topic, b.event())
            snap = second.wait(lambda m: m.stored >= 1, "the next event")
    finally:
        second.ingest.stop()
    assert snap.rejected == {} and snap.duplicates == 0, "something was redelivered: it had not been acknowledged"


def test_a_database_that_does_not_answer_shows_as_retrying_and_then_recovers(
    broker: PrivateBroker, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """SQLite only: a database whose tables are missing at first stands for one that cannot store."""
    broken = make_engine(f"sqlite:///{tmp_path / 'not-yet.db'}")
    a = SimulatedSeal("seal-a", CASE_A)
    caplog.set_level(logging.INFO, logger="server.mqtt_ingest")
    factory = make_session_factory(broken)
    running = start_ingest(server_mqtt_settings(broker, tmp_path), factory, tmp_path)
    try:
        with seal_connection(broker, a.device_id) as conn:
            conn.publish(a.event_topic, a.event())
            assert wait_for_log(caplog, lambda r: r.getMessage().startswith("cannot store"), WAIT_S)
            progress = running.ingest.progress()
            assert (progress.state, progress.unstored) == ("retrying", 1)
            assert progress.oldest_unstored_s > 0
            assert running.metrics.snapshot().storage_retries >= 1

            bring_back(tmp_path / "not-yet.db", a)  # the database is back, the seal registered, in one step
            running.wait(lambda m: m.stored >= 1, "the event, once the database answers")
        progress = running.ingest.progress()
        assert (progress.state, progress.unstored, progress.oldest_unstored_s) == ("ok", 0, 0.0)
        assert wait_for_log(caplog, lambda r: r.getMessage().startswith("storing works again"), WAIT_S)
    finally:
        running.ingest.stop()
        broken.dispose()


def test_a_seal_account_cannot_take_over_the_courts_session(
    broker: PrivateBroker, seals: tuple[SimulatedSeal, SimulatedSeal], session_factory: SessionFactory, tmp_path: Path
) -> None:
    """Logged in with seal-a's password under the court's configured client id, with a persistent session: were
    that the court's real id, the broker would hand the court's session over and drop what it queued."""
    a, b = seals
    settings = server_mqtt_settings(broker, tmp_path)
    running = start_ingest(settings, session_factory, tmp_path)
    hostile = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=settings.client_id, protocol=mqtt.MQTTv5)
    try:
        with seal_connection(broker, a.device_id) as _conn_a, seal_connection(broker, b.device_id) as conn_b:
            hostile.username_pw_set(a.device_id, broker.users[a.device_id])
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = 3600
            hostile.connect("127.0.0.1", broker.port, clean_start=False, properties=props)
            hostile.loop_start()
            conn_b.publish(b.event_topic, b.event())
            running.wait(lambda m: m.stored >= 1, "seal-b's event")
            assert running.ingest.connected, "the court's connection was taken over"
    finally:
        hostile.disconnect()
        hostile.loop_stop()
        running.ingest.stop()
    assert event_rows(session_factory) == [("seal-b", CASE_B, 1)]


def test_the_broker_refuses_a_message_larger_than_a_snapshot_may_be(
    broker: PrivateBroker, running: Running, seals: tuple[SimulatedSeal, SimulatedSeal], session_factory: SessionFactory
) -> None:
    a, _ = seals
    with seal_connection(broker, a.device_id) as conn:
        info = conn.client.publish(snapshot_topic(a.device_id, "0" * 64), b"\xff" * (MAX_SNAPSHOT_BYTES + 1), qos=1)
        info.wait_for_publish(2)  # refused, or the connection closed: either way nothing is forwarded
    with seal_connection(broker, a.device_id) as conn:  # Mosquitto closes a v5 connection after a refusal
        conn.publish(a.event_topic, a.event())
        snap = running.wait(lambda m: m.stored >= 1, "the next event")
    assert (snap.snapshots, snap.rejected) == (0, {}), "the oversized message reached the court"
