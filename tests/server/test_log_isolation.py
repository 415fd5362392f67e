"""The court's transactions run under READ COMMITTED on PostgreSQL whatever the server's default: the Merkle log's
writers read the log's size after they are granted its lock, which under REPEATABLE READ or SERIALIZABLE (a DBA's
``default_transaction_isolation``) would come from a snapshot taken before the lock, and two writers would insert
the same leaf index."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from seal_protocol import EventType
from server.audit.service import record_audit
from server.core.db import SessionFactory, make_engine, make_session_factory
from server.core.metrics import IngestMetrics
from server.evidence.log import lock_log
from server.ingest.ingestor import Ingestor
from server.ingest.results import IngestResult, Outcome
from tests.server.helpers import CASE_A, SimulatedSeal, message, register
from tests.server.log_checks import assert_whole_tree
from tests.server.pg_locks import Side, failed_batches, named_engine, wait_for_lock_waits


@pytest.fixture(params=["repeatable read", "serializable"])
def strict_engine(request: pytest.FixtureRequest, database_url: str, engine: Engine) -> Iterator[Engine]:
    """An engine on the test's schema whose server makes every transaction REPEATABLE READ or SERIALIZABLE by
    default (as ``ALTER DATABASE … SET default_transaction_isolation`` would, for this engine's connections only)."""
    if not database_url.startswith("postgresql"):
        pytest.skip("isolation levels of PostgreSQL (SQLite's writers queue at BEGIN IMMEDIATE)")
    strict = named_engine(database_url, default_transaction_isolation=request.param)
    try:
        yield strict
    finally:
        strict.dispose()


def test_the_court_s_transactions_are_read_committed_whatever_the_server_s_default(strict_engine: Engine) -> None:
    with strict_engine.connect() as conn:
        assert conn.scalar(text("SHOW default_transaction_isolation")) in ("repeatable read", "serializable")
        assert conn.scalar(text("SHOW transaction_isolation")) == "read committed"


def _run_while_holding_the_log(factory: SessionFactory, engine: Engine, waiter: Callable[[], object]) -> None:
    """A clerk's transaction takes the log's lock and records an audit entry; ``waiter`` runs on a thread until it
    waits for that lock (its transaction has read before: its snapshot, under REPEATABLE READ, is older than the
    entry's leaf); then the clerk commits, appending the leaf. Raises what ``waiter`` raised."""
    with factory() as clerk:
        record_audit(clerk, actor=None, action="case.note", target="first", case_no=CASE_A)
        lock_log(clerk)  # as the commit's append does: held until the commit
        second = Side(waiter)
        wait_for_lock_waits(engine, 1)
        clerk.commit()
    second.join()


def test_an_ingest_waiting_for_the_log_s_lock_appends_after_the_leaf_committed_meanwhile(
    strict_engine: Engine, session_factory: SessionFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Before, the worker's batch read the log's size from its snapshot, inserted the clerk's leaf index again and
    failed (then stored its messages one by one; under SERIALIZABLE it lost races until it gave up)."""
    seal = SimulatedSeal("seal-a", CASE_A)
    register(session_factory, seal)
    factory = make_session_factory(strict_engine)
    worker = Ingestor(factory, metrics=IngestMetrics(), snapshot_dir=tmp_path / "snapshots")
    worker.ingest([message(seal.event_topic, seal.event(EventType.HEARTBEAT, {"armed": True}))])
    results: list[IngestResult] = []
    batch = [message(seal.event_topic, seal.event(EventType.HEARTBEAT, {"armed": True})) for _ in range(3)]

    with caplog.at_level(logging.INFO, logger="server.ingest.ingestor"):
        _run_while_holding_the_log(factory, strict_engine, lambda: results.extend(worker.ingest(batch)))

    assert [r.outcome for r in results] == [Outcome.STORED] * 3
    assert failed_batches(caplog) == []
    assert assert_whole_tree(session_factory) == 4


def test_a_clerk_waiting_for_the_log_s_lock_appends_after_the_leaf_committed_meanwhile(
    strict_engine: Engine, session_factory: SessionFactory
) -> None:
    """Two web or command-line actions committing at once: before, the second one's commit failed on the first one's
    leaf index (an error page for a change that was in order)."""
    seal = SimulatedSeal("seal-a", CASE_A)
    register(session_factory, seal)
    factory = make_session_factory(strict_engine)

    def second_clerk() -> None:
        with factory() as session:
            record_audit(session, actor=None, action="case.note", target="second", case_no=CASE_A)
            session.commit()

    _run_while_holding_the_log(factory, strict_engine, second_clerk)

    assert assert_whole_tree(session_factory) == 0


def test_an_engine_with_another_isolation_is_refused() -> None:
    with pytest.raises(ValueError, match="READ COMMITTED"):
        make_engine("postgresql+psycopg://court@db.invalid/court", isolation_level="REPEATABLE READ")
