"""One seal's MQTT account floods distinct garbage (events signed by another key): past its budget of quarantine rows
the court only counts it (visible, alarmed, logged once), its own valid event in the flood is stored, and another
seal's intrusion is not held behind the flood in the court's queue; a flood on topics that do not parse is its
account's too. Real Mosquitto, real database."""

from __future__ import annotations

import argparse
import logging
import os
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from seal_dev.broker import PrivateBroker
from seal_protocol import EventType
from server.alarms.models import Alarm
from server.config import IngestSettings, MqttSettings
from server.core.db import SessionFactory
from server.core.metrics import IngestMetrics
from server.evidence.models import Event
from server.ingest.ingestor import Ingestor
from server.ingest.models import QuarantineCount, QuarantinedMessage
from server.ingest.mqtt import MqttIngest
from server.ingest.quarantine_cli import run_quarantine_command
from server.ingest.results import IngestResult, Outcome, Reason
from tests.server.helpers import CASE_A, CASE_B, SimulatedSeal, register
from tests.server.mqtt_helpers import seal_connection, server_mqtt_settings

WAIT_S = 60.0
FLOOD = 600  # within the court's in-flight window (its session's receive maximum): it all reaches the court's queue
ROWS = 20  # the flooding account's budget of quarantine rows

#: The budget's window in these tests: the longest allowed.
WINDOW_S = 7 * 24 * 3600


def _ingest(
    settings: MqttSettings, session_factory: SessionFactory, tmp_path: Path, seen: list[IngestResult]
) -> MqttIngest:
    # The budget's windows are aligned on the epoch: a week's, and never begun within two minutes of its end, so that
    # the flood stays in one window (else the next window's budget keeps rows again: not what is checked here).
    if (left := WINDOW_S - time.time() % WINDOW_S) < 120:
        time.sleep(left + 1)
    ingestor = Ingestor(
        session_factory,
        metrics=IngestMetrics(),
        snapshot_dir=tmp_path / "snapshots",
        ingest=IngestSettings(quarantine_seal_rows=ROWS, quarantine_window_s=WINDOW_S),
        on_commit=lambda results, _alarms: seen.extend(results),  # the outcomes in the order they were committed
    )
    ingest = MqttIngest(settings, ingestor)
    ingest.start()
    assert ingest.wait_subscribed(WAIT_S), "the ingest did not subscribe"
    return ingest


def test_a_flood_is_counted_alarmed_and_holds_no_other_seal_back(
    broker: PrivateBroker, session_factory: SessionFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    a, b = SimulatedSeal("seal-a", CASE_A), SimulatedSeal("seal-b", CASE_B)
    register(session_factory, a, b)
    forger = SimulatedSeal("seal-a", CASE_A)  # seal-a's password, another key: every event a bad_signature
    settings = server_mqtt_settings(broker, tmp_path)
    seen: list[IngestResult] = []
    _ingest(settings, session_factory, tmp_path, seen).stop()  # the court's session exists: the broker queues for it
    with seal_connection(broker, "seal-a") as ca, seal_connection(broker, "seal-b") as cb:
        infos = [ca.client.publish(a.event_topic, forger.event(), qos=1) for _ in range(FLOOD // 2)]
        infos.append(ca.client.publish(a.event_topic, a.event(EventType.INTRUSION, {"sensor": "pir"}), qos=1))
        infos += [ca.client.publish(a.event_topic, forger.event(), qos=1) for _ in range(FLOOD - FLOOD // 2)]
        for info in infos:
            info.wait_for_publish(WAIT_S)
        cb.publish(b.event_topic, b.event(EventType.INTRUSION, {"sensor": "pir"}))  # after the whole flood

    caplog.set_level(logging.WARNING, logger="server.ingest")
    ingest = _ingest(settings, session_factory, tmp_path, seen)
    try:
        metrics = ingest.ingestor.metrics
        done = lambda m: m.stored >= 2 and m.rejected.get("bad_signature", 0) >= FLOOD  # noqa: E731
        assert metrics.wait_until(done, WAIT_S), metrics.snapshot()
    finally:
        ingest.stop()

    # the other seal's intrusion, sent after the flood's last message, was stored before that message was handled
    b_at = next(i for i, r in enumerate(seen) if r.device_id == "seal-b" and r.outcome is Outcome.STORED)
    flood_after = [r for r in seen[b_at:] if r.device_id == "seal-a" and r.outcome is Outcome.QUARANTINED]
    assert flood_after, "seal-b's intrusion waited behind every message of seal-a's flood in the court's queue"
    with session_factory() as session:
        stored = {tuple(row) for row in session.execute(select(Event.device_id, Event.type))}
        assert stored == {("seal-a", "intrusion"), ("seal-b", "intrusion")}  # the real seal's event, in the flood
        rows = session.scalar(select(func.count()).where(QuarantinedMessage.device_id == "seal-a"))
        assert rows == ROWS
        counts = session.execute(select(QuarantineCount.device_id, QuarantineCount.reason, QuarantineCount.count))
        assert {(d, r) for d, r, _ in counts} == {("seal-a", "bad_signature")}
        assert _counted(session, "seal-a") == FLOOD - ROWS  # (one row per window: two if the flood crossed an hour)
        alarms = list(session.scalars(select(Alarm).where(Alarm.kind == "refusal_flood")))
        assert [(x.device_id, x.case_no, x.state) for x in alarms] == [("seal-a", CASE_A, "open")]
        assert alarms[0].details["rows_per_window"] == ROWS
        printed: list[str] = []
        where = argparse.Namespace(action="list", reason=None, device_id="seal-a", since=None, before=None, limit=50)
        run_quarantine_command(where, session, printed.append)
    assert sum(f"{FLOOD - ROWS} more refused, bytes not kept" in line for line in printed) == 1, printed
    assert ingest.ingestor.metrics.quarantine_counted() == {"bad_signature": FLOOD - ROWS}
    counted_lines = [r for r in caplog.records if "counted only" in r.getMessage()]
    assert len(counted_lines) == 1 and "bad_signature" in counted_lines[0].getMessage()  # one line a minute
    said = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR and "floods" in r.getMessage()]
    assert len(said) == 1 and "seal-server seal disable seal-a" in said[0]


def _counted(session: Session, device_id: str) -> int:
    total = session.scalar(select(func.sum(QuarantineCount.count)).where(QuarantineCount.device_id == device_id))
    return int(total or 0)


def test_a_flood_on_topics_that_do_not_parse_is_its_accounts(
    broker: PrivateBroker, session_factory: SessionFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Seal-a's ACL lets its account publish any last level under its snapshot topic: ``seal/v1/seal-a/snapshot/x17``
    does not parse (``invalid_topic``). Such a flood was charged to the account every topic naming no seal shares
    (``""``), its rows named no seal and no alarm was raised: it is seal-a's account's, counted, listed and alarmed."""
    a = SimulatedSeal("seal-a", CASE_A)
    register(session_factory, a)
    seen: list[IngestResult] = []
    caplog.set_level(logging.WARNING, logger="server.ingest")
    ingest = _ingest(server_mqtt_settings(broker, tmp_path), session_factory, tmp_path, seen)
    try:
        with seal_connection(broker, "seal-a") as ca:
            topics = [f"seal/v1/seal-a/snapshot/x{i}" for i in range(FLOOD)]
            for info in [ca.client.publish(topic, os.urandom(64), qos=1) for topic in topics]:
                info.wait_for_publish(WAIT_S)
        metrics = ingest.ingestor.metrics
        assert metrics.wait_until(lambda m: m.rejected.get("invalid_topic", 0) >= FLOOD, WAIT_S), metrics.snapshot()
    finally:
        ingest.stop()

    assert {(r.device_id, r.reason) for r in seen} == {("seal-a", Reason.INVALID_TOPIC)}
    with session_factory() as session:
        rows = session.execute(select(QuarantinedMessage.device_id, QuarantinedMessage.reason)).all()
        assert len(rows) == ROWS and set(rows) == {("seal-a", "invalid_topic")}
        counts = session.execute(select(QuarantineCount.device_id, QuarantineCount.reason))
        assert set(counts) == {("seal-a", "invalid_topic")}
        assert _counted(session, "seal-a") == FLOOD - ROWS
        alarms = list(session.scalars(select(Alarm).where(Alarm.kind == "refusal_flood")))
        assert [(x.device_id, x.case_no) for x in alarms] == [("seal-a", CASE_A)]
        printed: list[str] = []
        where = argparse.Namespace(action="list", reason=None, device_id="seal-a", since=None, before=None, limit=50)
        run_quarantine_command(where, session, printed.append)
    assert sum("\tseal-a\tinvalid_topic\t" in line for line in printed) == ROWS, printed  # its rows, by the seal
    assert sum(line.startswith(f"seal-a\tinvalid_topic\t另有 {FLOOD - ROWS} ") for line in printed) == 1, printed
    counted_lines = [r.getMessage() for r in caplog.records if "counted only" in r.getMessage()]
    assert len(counted_lines) == 1 and "'seal-a'" in counted_lines[0]
