"""Two ingest workers split one stream through an MQTT v5 shared subscription on a real Mosquitto: every event is
stored once, in one consistent chain per seal, though consecutive events of a seal go to different workers."""

from __future__ import annotations

import time
from pathlib import Path

from sqlalchemy import func, select

from seal_dev.broker import PrivateBroker
from seal_protocol import EventType
from server.alarms.models import Alarm
from server.core.db import SessionFactory, make_engine, make_session_factory
from server.core.metrics import IngestMetrics
from server.evidence.models import Event
from server.ingest.ingestor import Ingestor
from server.ingest.models import ChainState, QuarantinedMessage
from server.ingest.mqtt import MqttIngest
from tests.agent.helpers import wait_until
from tests.server.helpers import CASE_A, CASE_B, SimulatedSeal, register
from tests.server.mqtt_helpers import seal_connection, server_mqtt_settings

EVENTS_PER_SEAL = 60
WAIT_S = 30.0

#: How long an event beyond a gap waits for its predecessor (held by the other worker), and longer while its seal's
#: chain moves (server.ingest.gap_wait). The test asserts no missing_events alarm: only a pause of both workers longer
#: than this (or, with this small batch_size, a round through a worker's held events that long) would raise one. 1 s
#: passed at load 10 but not with a busy loop on top; 3 s did (with 10 s, the test once hid that the wait ran out in
#: a burst: tests/server/test_workers_gap_wait.py).
GAP_WAIT_S = 3.0


def test_two_workers_split_one_stream_and_store_each_event_once(
    broker: PrivateBroker, database_url: str, session_factory: SessionFactory, tmp_path: Path
) -> None:
    seals = [SimulatedSeal("seal-a", CASE_A), SimulatedSeal("seal-b", CASE_B)]
    register(session_factory, *seals)
    settings = server_mqtt_settings(broker, tmp_path).model_copy(
        update={"shared_group": "court-ingest", "gap_wait_s": GAP_WAIT_S, "batch_size": 5}
    )
    engine = make_engine(database_url)  # the second worker has its own connections, as another process would
    workers: list[tuple[MqttIngest, IngestMetrics]] = []
    try:
        for role, factory in (("w1", session_factory), ("w2", make_session_factory(engine))):
            metrics = IngestMetrics()
            ingestor = Ingestor(factory, metrics=metrics, snapshot_dir=tmp_path / "snapshots", gap_wait_s=GAP_WAIT_S)
            worker = MqttIngest(settings, ingestor, role=role)
            worker.start()
            assert worker.wait_subscribed(WAIT_S), f"worker {role} did not subscribe"
            workers.append((worker, metrics))
        connections = [seal_connection(broker, seal.device_id) for seal in seals]
        with connections[0] as conn_a, connections[1] as conn_b:
            sent = []  # a burst, as an outbox drains: each worker gets events whose predecessor the other holds
            for _ in range(EVENTS_PER_SEAL):
                for seal, conn in zip(seals, (conn_a, conn_b), strict=True):
                    sent.append(conn.client.publish(seal.event_topic, seal.event(EventType.HEARTBEAT), qos=1))
            for info in sent:
                info.wait_for_publish(WAIT_S)
            deadline = time.monotonic() + WAIT_S
            while sum(metrics.snapshot().stored for _, metrics in workers) < 2 * EVENTS_PER_SEAL:
                assert time.monotonic() < deadline, f"not every event was stored: {[m for _, m in workers]}"
                time.sleep(0.02)
    finally:
        for worker, _ in workers:
            worker.stop()
        engine.dispose()

    shares = [metrics.snapshot().stored for _, metrics in workers]
    assert all(share > 0 for share in shares) and sum(shares) == 2 * EVENTS_PER_SEAL, shares
    with session_factory() as session:
        for seal in seals:
            seqs = session.scalars(select(Event.seq).where(Event.device_id == seal.device_id).order_by(Event.seq))
            assert list(seqs) == list(range(1, EVENTS_PER_SEAL + 1)), "an event was lost or stored twice"
            chain = session.get(ChainState, seal.device_id)
            assert chain is not None and (chain.max_seq, chain.missing) == (EVENTS_PER_SEAL, [])
        assert session.scalar(select(func.count()).select_from(QuarantinedMessage)) == 0
        # An event that reached one worker before its predecessor reached the other waited for it: no gap alarm.
        assert session.scalar(select(func.count()).select_from(Alarm).where(Alarm.kind == "missing_events")) == 0


def test_a_process_that_joins_the_group_leaves_the_plain_subscription_its_session_kept(
    broker: PrivateBroker, database_url: str, session_factory: SessionFactory, tmp_path: Path
) -> None:
    """``seal-server run`` started once without ``shared_group`` keeps its plain subscriptions in its persistent
    session; after ``shared_group`` is set it must take only its share, not every message on top of it."""
    seal = SimulatedSeal("seal-a", CASE_A)
    register(session_factory, seal)
    alone = server_mqtt_settings(broker, tmp_path)
    grouped = alone.model_copy(update={"shared_group": "court-ingest"})
    snapshots = tmp_path / "snapshots"
    before = MqttIngest(alone, Ingestor(session_factory, metrics=IngestMetrics(), snapshot_dir=snapshots))
    before.start()
    assert before.wait_subscribed(WAIT_S), "the plain subscription was not granted"
    before.stop()

    engine = make_engine(database_url)
    members: list[tuple[MqttIngest, IngestMetrics]] = []
    try:
        for role, factory in (("", session_factory), ("w2", make_session_factory(engine))):
            metrics = IngestMetrics()
            member = MqttIngest(grouped, Ingestor(factory, metrics=metrics, snapshot_dir=snapshots), role=role)
            member.start()
            assert member.wait_subscribed(WAIT_S), f"member {role!r} did not subscribe"
            members.append((member, metrics))
        with seal_connection(broker, seal.device_id) as conn:
            sent = [conn.client.publish(seal.event_topic, seal.event(EventType.HEARTBEAT), qos=1) for _ in range(40)]
            for info in sent:
                info.wait_for_publish(WAIT_S)
            assert wait_until(lambda: sum(m.snapshot().stored for _, m in members) == 40, WAIT_S), members
    finally:
        for member, _ in members:
            member.stop()
        engine.dispose()

    # Every message went to one member: no copy came through a plain subscription left in the first one's session.
    assert [m.snapshot().duplicates for _, m in members] == [0, 0]
    assert all(m.snapshot().stored > 0 for _, m in members), [m.snapshot().stored for _, m in members]
