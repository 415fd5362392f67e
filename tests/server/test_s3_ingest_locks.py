"""A snapshot's store is written before the ingest's transaction: a store that does not answer costs the ingest its
timeouts, never the database's write lock (on SQLite every other writer — the web's, the other workers', the
liveness check — would wait for it, and fail after the busy timeout). Real SeaweedFS behind a black-hole relay, real
SQLite."""

from __future__ import annotations

import hashlib
import threading
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

#: Longer than the test ever lets the store's request wait: the relay cuts it once the writer has committed.
READ_TIMEOUT_S = 60.0
WAIT_S = 10.0


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
        ingest.start()
        assert relay.connections_at_least(1, WAIT_S) == 1  # the ingest is waiting for the store
        with session_factory() as session:  # a writer's transaction: BEGIN IMMEDIATE, SQLite's write lock
            session.execute(text("SELECT 1"))
            session.commit()
        # The writer had the lock while the ingest still waited for the store: it has had no answer yet.
        assert ingest.is_alive() and not results
        relay.close()  # the store goes away: the ingest's request fails now, not after its read timeout
        ingest.join(WAIT_S)
        assert not ingest.is_alive()
    finally:
        relay.close()
        ingestor.close()
    [result] = results
    assert (result.outcome, result.reason) == (Outcome.QUARANTINED, Reason.STORAGE_ERROR)
    assert "Connection was closed" in result.detail  # by the relay's cut, after the writer committed: no timeout
    assert metrics.snapshot().rejected == {"storage_error": 1}
    with session_factory() as session:
        assert session.scalar(select(func.count()).select_from(Snapshot)) == 0
