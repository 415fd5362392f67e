"""The Merkle log in the database: events ingested through the real Ingestor become leaves, the API's proofs verify
against the signed checkpoint with the published key, concurrent appenders keep one tree, and migration 0006
backfills the events stored before it."""

from __future__ import annotations

import sqlite3
import threading
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select

from seal_protocol import EventType
from seal_verify import merkle as verifier
from server.app import create_app
from server.audit.models import AuditEntry
from server.auth.access import Role
from server.core.db import SessionFactory
from server.core.metrics import IngestMetrics
from server.evidence import log, merkle
from server.evidence.checkpointer import Checkpointer
from server.evidence.checkpoints import LogKey, open_checkpoint
from server.evidence.models import Event, LogLeaf
from server.ingest.batch import IngestBatch
from server.ingest.ingestor import Ingestor
from server.migrations.run import downgrade, upgrade
from tests.server.auth_helpers import LOG_ORIGIN, add_user, bearer, make_settings
from tests.server.helpers import CASE_A, CASE_B, SimulatedSeal, message, register
from tests.server.log_checks import assert_whole_tree

ORIGIN = LOG_ORIGIN


def ingest(session_factory: SessionFactory, tmp_path: Path, seal: SimulatedSeal, count: int) -> None:
    ingestor = Ingestor(session_factory, metrics=IngestMetrics(), snapshot_dir=tmp_path / "snapshots")
    for _ in range(count):
        ingestor.ingest([message(seal.event_topic, seal.event(EventType.HEARTBEAT, {"armed": True}))])


def test_ingested_events_are_leaves_and_their_proofs_verify_against_the_signed_checkpoint(
    database_url: str, session_factory: SessionFactory, tmp_path: Path
) -> None:
    seal, other = SimulatedSeal("seal-a", CASE_A), SimulatedSeal("seal-b", CASE_B)
    register(session_factory, seal, other)
    ingest(session_factory, tmp_path, seal, 5)
    ingest(session_factory, tmp_path, other, 2)
    assert assert_whole_tree(session_factory) == 7

    key = LogKey(tmp_path / "log.key", ORIGIN)
    checkpointer = Checkpointer(session_factory, key, interval_s=60)
    with session_factory() as session:
        first = log.tree_size(session)  # the 7 events and the audit entries of the registration
    assert checkpointer.run_once() == first
    assert checkpointer.run_once() is None  # the log did not grow
    ingest(session_factory, tmp_path, seal, 4)
    second = first + 4
    assert checkpointer.run_once() == second

    settings = make_settings(database_url, tmp_path)  # the log key of ``key`` above
    add_user(session_factory, "judge-a", Role.JUDGE, (CASE_A,))
    with TestClient(create_app(settings, with_ingest=False)) as client:
        published = client.get("/api/log/key").text.strip()
        assert published.startswith(f"{ORIGIN}+")
        note = client.get("/api/log/checkpoint")
        assert note.headers["content-type"].startswith("text/plain")
        checkpoint = open_checkpoint(note.content, published)  # the bytes served
        assert checkpoint.tree_size == second

        headers = bearer(session_factory, "judge-a")
        with session_factory() as session:
            events = session.scalars(select(Event).order_by(Event.id)).all()
        for event in events:
            answer = client.get(f"/api/log/inclusion/{event.event_id}", headers=headers)
            if event.case_no != CASE_A:
                assert answer.status_code == 404  # not the judge's case
                continue
            assert answer.status_code == 200, answer.text
            body = answer.json()
            signed = open_checkpoint(body["checkpoint"], published)
            leaf = merkle.leaf_hash(event.raw)
            assert body["leaf_hash"] == leaf.hex() and body["tree_size"] == signed.tree_size
            proof = [bytes.fromhex(h) for h in body["proof"]]
            assert verifier.root_from_inclusion(body["leaf_index"], signed.tree_size, leaf, proof) == signed.root_hash

        with session_factory() as session:
            old_root = log.root_hash(session, first)
        answer = client.get("/api/log/consistency", params={"old": first, "new": second}, headers=headers)
        assert answer.status_code == 200, answer.text
        proof = [bytes.fromhex(h) for h in answer.json()["proof"]]
        verifier.verify_consistency(first, second, old_root, checkpoint.root_hash, proof)
        # public, as the checkpoint is: whoever checks a bundle against a checkpoint fetched here needs the proof
        anonymous = client.get("/api/log/consistency", params={"old": first, "new": second})
        assert anonymous.status_code == 200 and anonymous.json() == answer.json()
        # only between sizes of signed checkpoints: not into the leaves after the latest one, nor past the log
        ingest(session_factory, tmp_path, seal, 1)
        for unsigned in ({"old": first, "new": second + 1}, {"old": first + 1, "new": second}, {"old": 1, "new": 999}):
            assert client.get("/api/log/consistency", params=unsigned).status_code == 404, unsigned
        backwards = client.get("/api/log/consistency", params={"old": second, "new": first})
        assert backwards.status_code == 400, backwards.text
        assert client.get("/api/log/consistency", params={"old": 0, "new": second}).status_code == 422


def test_concurrent_appenders_keep_one_tree(session_factory: SessionFactory, tmp_path: Path) -> None:
    seals = [SimulatedSeal(f"seal-{i}", CASE_A) for i in range(4)]
    register(session_factory, *seals)
    errors: list[BaseException] = []

    def worker(seal: SimulatedSeal) -> None:
        try:
            ingest(session_factory, tmp_path, seal, 15)
        except BaseException as exc:  # reported to the test below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(seal,)) for seal in seals]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors
    assert assert_whole_tree(session_factory) == 60


def test_migration_0006_backfills_the_stored_events(
    engine: Engine, session_factory: SessionFactory, tmp_path: Path
) -> None:
    seal = SimulatedSeal("seal-a", CASE_A)
    register(session_factory, seal)
    ingest(session_factory, tmp_path, seal, 9)
    event_leaves = select(LogLeaf.event_id, LogLeaf.leaf_hash).where(LogLeaf.event_id.is_not(None))
    with session_factory() as session:
        before = set(session.execute(event_leaves).all())
    downgrade(engine, "5a1c0e7d9b42")
    upgrade(engine)  # 0006 appends the events, then 0012 the audit entries
    with session_factory() as session:
        assert set(session.execute(event_leaves).all()) == before
        first = session.scalars(select(LogLeaf).order_by(LogLeaf.leaf_index).limit(9)).all()
        assert all(leaf.event_id is not None for leaf in first)
    assert assert_whole_tree(session_factory) == 9


def test_an_ingest_appends_from_its_committed_frontier_only(session_factory: SessionFactory, tmp_path: Path) -> None:
    """An ingest worker keeps the log's peaks of its last committed append. Peaks made by a transaction that rolled
    back are never kept: were they, another writer's leaf at the same index would make the next append build on
    hashes that are not in the tree."""
    seal, other = SimulatedSeal("seal-a", CASE_A), SimulatedSeal("seal-b", CASE_B)
    register(session_factory, seal, other)
    ingestor = Ingestor(session_factory, metrics=IngestMetrics(), snapshot_dir=tmp_path / "snapshots")
    for _ in range(3):
        ingestor.ingest([message(seal.event_topic, seal.event(EventType.HEARTBEAT, {"armed": True}))])
    with session_factory() as session:
        size = log.tree_size(session)
    assert ingestor.cache.frontier is not None and ingestor.cache.frontier.size == size

    pending = message(seal.event_topic, seal.event(EventType.HEARTBEAT, {"armed": True}))
    with session_factory() as session:  # the worker's batch appends a leaf, then its transaction rolls back
        batch = IngestBatch(session, cache=ingestor.cache, snapshots=ingestor.snapshots, fold_window=timedelta(0))
        batch.apply([pending])
        assert batch.frontier is not None and batch.frontier.size == size + 1
        session.rollback()
    assert ingestor.cache.frontier.size == size

    # another writer takes that index with another leaf; the worker then appends on top of it
    Ingestor(session_factory, metrics=IngestMetrics(), snapshot_dir=tmp_path / "snapshots").ingest(
        [message(other.event_topic, other.event(EventType.HEARTBEAT, {"armed": True}))]
    )
    ingestor.ingest([pending])
    ingestor.ingest([message(seal.event_topic, seal.event(EventType.HEARTBEAT, {"armed": True}))])
    assert assert_whole_tree(session_factory) == 6


def test_a_worker_appends_on_the_stored_peaks_after_the_database_lost_its_last_commits(
    engine: Engine, session_factory: SessionFactory, tmp_path: Path
) -> None:
    """A failover to an asynchronous replica (docs/deploy.md) or a restored backup loses the last commits: the log is
    smaller than a worker's committed frontier. Once other writers bring it back to that size with other leaves, the
    worker must not append on its remembered peaks: they are not the tree's, and every hash above them would be
    wrong for good (the log is append-only)."""
    if engine.dialect.name != "sqlite":
        pytest.skip("the database's loss is played with SQLite's backup API")
    seal, other = SimulatedSeal("seal-a", CASE_A), SimulatedSeal("seal-b", CASE_B)
    register(session_factory, seal, other)
    worker = Ingestor(session_factory, metrics=IngestMetrics(), snapshot_dir=tmp_path / "snapshots")
    for _ in range(2):
        worker.ingest([message(seal.event_topic, seal.event(EventType.HEARTBEAT, {"armed": True}))])
    saved = sqlite3.connect(tmp_path / "saved.db")
    live = engine.raw_connection()
    database = live.driver_connection
    assert isinstance(database, sqlite3.Connection)
    database.backup(saved)
    worker.ingest([message(seal.event_topic, seal.event(EventType.HEARTBEAT, {"armed": True}))])  # then lost
    assert worker.cache.frontier is not None
    size = worker.cache.frontier.size

    saved.backup(database)  # the database as it was before the worker's last commit
    live.close()
    saved.close()
    engine.dispose()
    peer = Ingestor(session_factory, metrics=IngestMetrics(), snapshot_dir=tmp_path / "snapshots")
    peer.ingest([message(other.event_topic, other.event(EventType.HEARTBEAT, {"armed": True}))])
    with session_factory() as session:
        assert log.tree_size(session) == size  # the worker's size again, with another last leaf
    for _ in range(4):  # the subtrees these complete are built on the worker's peaks, if it kept them
        worker.ingest([message(other.event_topic, other.event(EventType.HEARTBEAT, {"armed": True}))])
    assert assert_whole_tree(session_factory) == 2 + 1 + 4


def test_a_worker_forgets_the_logs_peaks_when_the_database_goes_away(tmp_path: Path) -> None:
    """A database that does not answer may come back as another one (a failover, a restored backup): the worker reads
    the log's peaks again then, whatever it remembered."""
    from server.core.db import make_engine, make_session_factory
    from server.errors import StorageUnavailable
    from server.migrations.run import init_db

    path = tmp_path / "court.db"
    engine = make_engine(f"sqlite:///{path}")
    init_db(engine)
    factory = make_session_factory(engine)
    seal = SimulatedSeal("seal-a", CASE_A)
    register(factory, seal)
    ingestor = Ingestor(factory, metrics=IngestMetrics(), snapshot_dir=tmp_path / "snapshots")
    ingestor.ingest([message(seal.event_topic, seal.event(EventType.HEARTBEAT, {"armed": True}))])
    assert ingestor.cache.frontier is not None

    engine.dispose()
    path.rename(tmp_path / "away.db")
    path.mkdir()  # no database there: every connection fails
    try:
        with pytest.raises(StorageUnavailable):
            ingestor.ingest([message(seal.event_topic, seal.event(EventType.HEARTBEAT, {"armed": True}))])
        assert ingestor.cache.frontier is None
    finally:
        path.rmdir()
        (tmp_path / "away.db").rename(path)
    ingestor.ingest([message(seal.event_topic, seal.event(EventType.HEARTBEAT, {"armed": True}))])
    assert assert_whole_tree(factory) >= 2
    engine.dispose()


def test_a_worker_and_audit_entries_interleave_in_one_tree(session_factory: SessionFactory, tmp_path: Path) -> None:
    """Audit entries are appended by transactions of their own (a clerk's, the liveness check's), which never see
    the ingest worker's remembered peaks: the worker finds the log longer than it left it and reads the peaks again;
    an audit entry whose transaction rolls back appends nothing for it to trip on."""
    from server.audit.service import record_audit

    seal = SimulatedSeal("seal-a", CASE_A)
    register(session_factory, seal)
    worker = Ingestor(session_factory, metrics=IngestMetrics(), snapshot_dir=tmp_path / "snapshots")
    entries = select(func.count()).select_from(AuditEntry)
    with session_factory() as session:
        before = session.scalar(entries)
    for i in range(12):
        worker.ingest([message(seal.event_topic, seal.event(EventType.HEARTBEAT, {"armed": True}))])
        for j in range(i % 3):  # 0, 1 or 2 entries between two batches: the log grows by other leaves
            with session_factory() as session:
                record_audit(session, actor=None, action="case.note", target=f"note-{i}-{j}", case_no=CASE_A)
                if i % 4 == 3:
                    session.rollback()  # appended nothing: an entry's leaf is added at its commit
                else:
                    session.commit()
    assert assert_whole_tree(session_factory) == 12
    with session_factory() as session:
        assert session.scalar(entries) == before + 9
