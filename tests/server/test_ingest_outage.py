"""The database goes away while a failed batch is being stored one message at a time, after some of them were
committed alone: those are done — acknowledged, receipted, counted once — and only the rest is tried again.

A real broker and the real ingest; the database's refusal of one row is a trigger, its going away a driver error
raised at the driver's boundary (SQLAlchemy's ``before_cursor_execute``) for every statement, the court's probe
included, until it is back."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, event, select

from seal_dev.broker import PrivateBroker
from server.core.db import SessionFactory
from server.ingest.models import QuarantinedMessage
from tests.server.helpers import CASE_A, SimulatedSeal, refuse_seq_in_the_database, register
from tests.server.mqtt_helpers import seal_connection, server_mqtt_settings
from tests.server.test_mqtt_ingest import event_rows, start_ingest

DOWN_S = 1.0  # how long the database stays away once it went


class Outage:
    """Takes the database away right after the first commit of a quarantine row, for :data:`DOWN_S`."""

    def __init__(self, engine: Engine) -> None:
        self.down = threading.Event()
        self.happened = threading.Event()
        event.listen(engine, "before_cursor_execute", self._execute)
        event.listen(engine, "commit", self._commit)  # as the commit is sent: it still goes through

    def _execute(self, connection: Any, _cursor: object, statement: str, *_args: object) -> None:
        if self.down.is_set():
            raise connection.dialect.loaded_dbapi.OperationalError("the test took the database away")
        if statement.startswith(f"INSERT INTO {QuarantinedMessage.__tablename__} "):
            connection.info["quarantined"] = True

    def _commit(self, connection: Any) -> None:
        if self.happened.is_set() or not connection.info.pop("quarantined", False):
            return
        self.happened.set()
        self.down.set()
        threading.Timer(DOWN_S, self.down.clear).start()


def test_messages_committed_before_the_database_went_away_are_not_stored_or_counted_again(
    broker: PrivateBroker, engine: Engine, session_factory: SessionFactory, database_url: str, tmp_path: Path
) -> None:
    seal = SimulatedSeal("seal-a", CASE_A)
    register(session_factory, seal)
    refuse_seq_in_the_database(session_factory, database_url, seq=2)  # the batch fails: stored one by one
    # the three messages wait for one batch (the longest linger there is): refused bytes, then seq 1 and 2
    settings = server_mqtt_settings(broker, tmp_path).model_copy(update={"batch_linger_ms": 1000})
    outage = Outage(engine)
    running = start_ingest(settings, session_factory, tmp_path)
    try:
        with seal_connection(broker, seal.device_id) as conn:
            for payload in (b"not json", seal.event(), seal.event()):
                conn.publish(seal.event_topic, payload)
            # alone, the refused bytes commit their quarantine row; the database goes away before seq 1 is stored
            snap = running.wait(lambda m: m.stored == 1 and m.rejected_total >= 2, "seq 1 stored after the outage")
        assert outage.happened.is_set()
        assert running.metrics.snapshot().storage_retries >= 1
    finally:
        running.ingest.stop()
    assert snap.rejected == {"invalid_json": 1, "storage_error": 1}
    assert snap.duplicates == 0
    assert event_rows(session_factory) == [("seal-a", CASE_A, 1)]
    with session_factory() as session:
        rows = {row.reason: row.copies for row in session.scalars(select(QuarantinedMessage))}
    assert rows == {"invalid_json": 1, "storage_error": 1}  # each message received once is counted once
    assert running.ingest.progress().unstored == 0
