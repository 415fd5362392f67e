"""A storage that cannot write — a full disk, a database turned read-only — is no message's fault: the batch waits
and is tried again, as when the database does not answer, and no valid event is quarantined for it.

The refusals are the databases' own: SQLite's ``max_page_count`` held at the file's size (``SQLITE_FULL``, as on a
full disk, while ``SELECT 1`` still answers), PostgreSQL's ``default_transaction_read_only`` (SQLSTATE 25006, as on
a standby after a failover)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, event, func, select, text

from seal_dev.broker import PrivateBroker
from seal_protocol import EventType
from server.core.db import SessionFactory, make_engine, make_session_factory
from server.errors import StorageUnavailable
from server.evidence.models import Event
from server.ingest.models import QuarantinedMessage
from server.ingest.results import Message, Outcome
from server.migrations.run import init_db
from tests.server.helpers import CASE_A, SimulatedSeal, register
from tests.server.ingest_world import make_court
from tests.server.mqtt_helpers import seal_connection, server_mqtt_settings, wait_for_log
from tests.server.test_mqtt_ingest import WAIT_S, start_ingest

BIG = {"note": "x" * 30_000}  # a valid heartbeat whose row needs pages the full file does not have


class Refusing:
    """Makes ``engine``'s new connections refuse writes while :attr:`full` is set: SQLite's file may not grow,
    PostgreSQL's transactions are read-only. Setting or clearing it drops the pooled connections."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.sqlite = engine.dialect.name == "sqlite"
        self.pages = 0
        event.listen(engine, "connect", self._connect)

    def set(self, full: bool) -> None:
        if self.sqlite:
            with self.engine.connect() as conn:
                self.pages = int(conn.execute(text("PRAGMA page_count")).scalar_one()) if full else 0
        else:
            self.pages = 1 if full else 0
        self.engine.dispose()

    def _connect(self, dbapi_connection: Any, _record: object) -> None:
        if not self.pages:
            return
        cursor = dbapi_connection.cursor()
        if self.sqlite:
            cursor.execute(f"PRAGMA max_page_count={self.pages}")
        else:
            cursor.execute("SET default_transaction_read_only = on")
            dbapi_connection.commit()
        cursor.close()


def quarantined(session_factory: SessionFactory) -> int:
    with session_factory() as session:
        return session.scalar(select(func.count()).select_from(QuarantinedMessage)) or 0


def stored_seqs(session_factory: SessionFactory) -> list[tuple[str, int]]:
    with session_factory() as session:
        return [(e.device_id, e.seq) for e in session.scalars(select(Event).order_by(Event.device_id, Event.seq))]


def test_a_storage_that_cannot_write_makes_the_batch_wait_not_its_messages_quarantined(
    engine: Engine, session_factory: SessionFactory, tmp_path: Path
) -> None:
    court = make_court(session_factory, tmp_path)
    a, b = court.a, court.b
    court.send(a, a.event())  # some history: the tables have pages
    refusing = Refusing(engine)
    refusing.set(True)
    batch = [
        Message(a.event_topic, a.event(EventType.HEARTBEAT, BIG), datetime.now(UTC)),
        Message(b.event_topic, b.event(EventType.HEARTBEAT, BIG), datetime.now(UTC)),
    ]
    with pytest.raises(StorageUnavailable, match="the storage is failing") as raised:
        court.ingestor.ingest(batch)
    assert raised.value.stored == []  # nothing committed, so nothing to acknowledge
    assert quarantined(session_factory) == 0
    assert court.metrics.snapshot().rejected == {}

    refusing.set(False)  # room again: the same batch, tried again, is stored
    results = court.ingestor.ingest(batch)
    assert [r.outcome for r in results] == [Outcome.STORED, Outcome.STORED]
    assert stored_seqs(session_factory) == [("seal-a", 1), ("seal-a", 2), ("seal-b", 1)]
    assert quarantined(session_factory) == 0


def test_a_full_disk_shows_as_retrying_and_the_events_are_stored_once_there_is_room(
    broker: PrivateBroker, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The MQTT ingest: unacknowledged, retried with back-off, counted, logged with the reason; health says
    ``retrying`` (``/api/health``'s ingest is this state) until the disk has room."""
    engine = make_engine(f"sqlite:///{tmp_path / 'court.db'}")
    init_db(engine)
    factory = make_session_factory(engine)
    a, b = SimulatedSeal("seal-a", CASE_A), SimulatedSeal("seal-b", "(2022)苏0214执55号")
    register(factory, a, b)
    caplog.set_level(logging.INFO, logger="server.mqtt_ingest")
    refusing = Refusing(engine)
    refusing.set(True)
    running = start_ingest(server_mqtt_settings(broker, tmp_path), factory, tmp_path)
    try:
        with seal_connection(broker, a.device_id) as conn_a, seal_connection(broker, b.device_id) as conn_b:
            conn_a.publish(a.event_topic, a.event(EventType.HEARTBEAT, BIG))
            conn_b.publish(b.event_topic, b.event(EventType.HEARTBEAT, BIG))
            assert wait_for_log(caplog, lambda r: "the storage is failing (SQLITE_FULL)" in r.getMessage(), WAIT_S)
            progress = running.ingest.progress()
            assert progress.state == "retrying" and progress.unstored >= 1
            assert running.metrics.snapshot().storage_retries >= 1
            assert running.metrics.snapshot().rejected == {}
            assert quarantined(factory) == 0

            refusing.set(False)  # the disk has room again
            running.wait(lambda m: m.stored >= 2, "both events, once the disk has room")
        progress = running.ingest.progress()
        assert (progress.state, progress.unstored) == ("ok", 0)
    finally:
        running.ingest.stop()
        engine.dispose()
    assert stored_seqs(factory) == [("seal-a", 1), ("seal-b", 1)]
    assert quarantined(factory) == 0
    assert running.metrics.snapshot().rejected == {}
