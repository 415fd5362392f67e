"""A snapshot's store is written before the ingest's transaction: a store that does not answer costs the ingest its
timeouts, never the database's write lock (on SQLite every other writer — the web's, the other workers', the
liveness check — would wait for it, and fail after the busy timeout). Real SeaweedFS behind a black-hole relay, real
SQLite."""

from __future__ import annotations

import hashlib
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select, text

from seal_dev.s3 import PrivateS3
from seal_protocol import snapshot_topic
from server.core.db import SessionFactory
from server.core.metrics import IngestMetrics
from server.evidence.models import Snapshot
from server.ingest.ingestor import Ingestor
from server.ingest.results import IngestResult, Outcome, Reason
from server.stores import Stores
from tests.server.auth_helpers import make_settings
from tests.server.helpers import CASE_A, SimulatedSeal, jpeg_bytes, message, register
from tests.server.s3_helpers import Relay, s3_settings

READ_TIMEOUT_S = 2.0


def test_a_store_that_does_not_answer_never_holds_the_database_while_the_ingest_waits_for_it(
    s3_store: PrivateS3, session_factory: SessionFactory, database_url: str, tmp_path: Path
) -> None:
    if not database_url.startswith("sqlite"):
        pytest.skip("SQLite's one write lock: PostgreSQL has none to hold")
    relay = Relay(s3_store.ports["s3.port"])
    relay.set("silent")  # takes the connection, never answers
    settings = s3_settings(
        make_settings(database_url, tmp_path),
        s3_store,
        tmp_path,
        endpoint_url=relay.url,
        connect_timeout_s=1.0,
        read_timeout_s=READ_TIMEOUT_S,
        max_attempts=1,
    )
    seal = SimulatedSeal("seal-lock", CASE_A)
    register(session_factory, seal)
    metrics = IngestMetrics()
    ingestor = Ingestor(session_factory, metrics=metrics, snapshots=Stores.from_settings(settings).snapshots)
    picture = jpeg_bytes(shade=9)
    sha = hashlib.sha256(picture).hexdigest()
    results: list[IngestResult] = []
    ingest = threading.Thread(
        target=lambda: results.extend(ingestor.ingest([message(snapshot_topic(seal.device_id, sha), picture)]))
    )
    try:
        started = time.monotonic()
        ingest.start()
        time.sleep(0.5)  # the ingest is waiting for the store by now
        with session_factory() as session:  # a writer's transaction: BEGIN IMMEDIATE, SQLite's write lock
            session.execute(text("SELECT 1"))
            session.commit()
        waited = time.monotonic() - started - 0.5
        ingest.join(READ_TIMEOUT_S + 10)
        assert not ingest.is_alive()
    finally:
        relay.close()
        ingestor.close()
    assert waited < 0.5, f"a writer waited {waited:.1f} s for the ingest's transaction while it waited for the store"
    [result] = results
    assert (result.outcome, result.reason) == (Outcome.QUARANTINED, Reason.STORAGE_ERROR)
    assert metrics.snapshot().rejected == {"storage_error": 1}
    with session_factory() as session:
        assert session.scalar(select(func.count()).select_from(Snapshot)) == 0
