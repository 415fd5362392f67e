"""The Merkle log when the database loses its last commits (a restored backup, a failover to an asynchronous
replica) under a running court: no Merkle node is written from a cached frontier the stored tree does not have, and
the log's key never signs a checkpoint inconsistent with one it signed before (the record kept outside the database,
:mod:`server.evidence.signed_record`).

A "backup" is the database as it was (SQLite: a copy of the file; PostgreSQL: a copy of every table), a "restore"
puts it back while the test's engine and workers go on."""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, insert, select, text

from seal_protocol import EventType
from seal_verify import merkle as verifier
from server.app import create_app
from server.audit.models import AuditEntry
from server.core.base import Base
from server.core.db import SessionFactory
from server.core.metrics import IngestMetrics
from server.evidence import log, merkle, signed_record
from server.evidence.checkpointer import Checkpointer
from server.evidence.checkpoints import LogKey
from server.evidence.errors import CheckpointRefused
from server.evidence.models import LogLeaf
from server.ingest.ingestor import Ingestor
from tests.server.auth_helpers import LOG_ORIGIN, make_settings
from tests.server.helpers import CASE_A, SimulatedSeal, message, register

Restore = Callable[[], None]


def backup(engine: Engine, database_url: str, tmp_path: Path) -> Restore:
    """Keep the database as it is now; the function that puts it back."""
    tables = [table.name for table in Base.metadata.sorted_tables]
    if engine.dialect.name == "sqlite":
        path = Path(engine.url.database or "")
        engine.dispose()  # the last connection folds the write-ahead log into the file
        copy = tmp_path / f"backup-{len(list(tmp_path.glob('backup-*')))}.db"
        shutil.copyfile(path, copy)

        def restore_file() -> None:
            engine.dispose()
            for extra in (Path(f"{path}-wal"), Path(f"{path}-shm")):
                extra.unlink(missing_ok=True)
            shutil.copyfile(copy, path)

        return restore_file
    prefix = f"bak{len(tables)}_"
    with engine.begin() as conn:
        for table in tables:
            conn.execute(text(f'DROP TABLE IF EXISTS "{prefix}{table}"'))
            conn.execute(text(f'CREATE TABLE "{prefix}{table}" AS TABLE "{table}"'))

    def restore_tables() -> None:
        with engine.begin() as conn:
            conn.execute(text("SET LOCAL session_replication_role = replica"))  # no foreign key checks meanwhile
            conn.execute(text("TRUNCATE " + ", ".join(f'"{table}"' for table in tables)))
            for table in tables:
                conn.execute(text(f'INSERT INTO "{table}" SELECT * FROM "{prefix}{table}"'))
        engine.dispose()

    return restore_tables


def stored_tree_is_rfc6962(session_factory: SessionFactory) -> int:
    """Assert that the stored root is RFC 6962's root of the stored leaf hashes and that every leaf's inclusion
    proof, as the server makes it, leads to it (checked by seal-verify); the log's size."""
    with session_factory() as session:
        hashes = list(session.scalars(select(LogLeaf.leaf_hash).order_by(LogLeaf.leaf_index)))
        size = len(hashes)

        def mth(part: Sequence[bytes]) -> bytes:
            if len(part) == 1:
                return part[0]
            k = 1
            while k * 2 < len(part):
                k *= 2
            return hashlib.sha256(b"\x01" + mth(part[:k]) + mth(part[k:])).digest()

        root = log.root_hash(session, size)
        assert root == mth(hashes)
        proofs = log.inclusion_proofs(session, range(size), size)
        for index in range(size):
            assert verifier.root_from_inclusion(index, size, hashes[index], proofs[index]) == root
    return size


# -- (a) a cached frontier after a restore ---------------------------------------------------------------------------


def audit_rows(session_factory: SessionFactory, count: int) -> list[int]:
    """``count`` audit rows (inserted as rows only: no leaves), whose ids the leaves below name."""
    with session_factory() as session:
        table = AuditEntry.__table__
        ids = [
            session.execute(
                insert(table)
                .values(actor="-", action="test", target="", details={}, record=b"{}")
                .returning(table.c.id)  # type: ignore[attr-defined]
            ).scalar_one()
            for _ in range(count)
        ]
        session.commit()
    return ids


def append(session_factory: SessionFactory, leaves: list[log.Leaf], known: log.Frontier | None = None) -> log.Frontier:
    with session_factory() as session:
        frontier = log.append_leaves(session, leaves, known)
        session.commit()
    assert frontier is not None
    return frontier


def test_a_frontier_cached_before_a_restore_writes_no_node_the_stored_leaves_do_not_make(
    database_url: str, engine: Engine, session_factory: SessionFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ids = iter(audit_rows(session_factory, 24))
    append(session_factory, [("audit", next(ids), b"d%d" % i) for i in range(10)])
    restore = backup(engine, database_url, tmp_path)
    # Worker W appends e1..e5 and keeps the frontier of 15 leaves, ending with e5.
    cached = append(session_factory, [("audit", next(ids), b"e%d" % i) for i in range(1, 6)])
    assert cached.size == 15
    restore()  # the log is back at 10 leaves
    # Another writer appends x1..x4 and a re-sent e5: 15 leaves again, ending with the same leaf as W's frontier.
    append(session_factory, [("audit", next(ids), b"x%d" % i) for i in range(1, 5)] + [("audit", next(ids), b"e5")])
    with caplog.at_level(logging.WARNING, logger="server.evidence.log"):
        after = append(session_factory, [("audit", next(ids), b"g")], known=cached)  # W's next batch
    assert stored_tree_is_rfc6962(session_factory) == 16
    assert "differ from those this process appended to" in caplog.text  # the restore is logged
    with session_factory() as session:
        assert merkle.root_from_frontier(after.hashes) == log.root_hash(session, 16)


def test_a_frontier_of_the_stored_tree_is_used_without_a_warning(
    engine: Engine, session_factory: SessionFactory, caplog: pytest.LogCaptureFixture
) -> None:
    ids = iter(audit_rows(session_factory, 40))
    known = None
    with caplog.at_level(logging.WARNING, logger="server.evidence.log"):
        for batch in range(12):  # sizes with a peak at level 0 and without
            leaves = [("audit", next(ids), b"%d.%d" % (batch, i)) for i in range(1 + batch % 2)]
            known = append(session_factory, leaves, known)
        stale = known
        append(session_factory, [("audit", next(ids), b"other")], None)  # another writer: the log grew
        append(session_factory, [("audit", next(ids), b"late")], stale)  # a hint of another size: read anew
    assert caplog.text == ""
    assert stored_tree_is_rfc6962(session_factory) == 20


# -- (b) checkpoints after a restore ---------------------------------------------------------------------------------


class Court:
    """Seals ingested by the real ingest, and a checkpointer with the log key of ``key_file``."""

    def __init__(self, session_factory: SessionFactory, tmp_path: Path, key_file: Path) -> None:
        self.session_factory = session_factory
        self.tmp_path = tmp_path
        self.seals = {name: SimulatedSeal(name, CASE_A) for name in ("seal-a", "seal-b", "seal-c")}
        register(session_factory, *self.seals.values())
        self.start(key_file)

    def start(self, key_file: Path) -> None:
        """A (re)started process: new key, checkpointer, metrics, and no record object kept in memory."""
        signed_record._records.clear()
        self.key = LogKey(key_file, LOG_ORIGIN)
        self.metrics = IngestMetrics()
        self.checkpointer = Checkpointer(self.session_factory, self.key, interval_s=60, metrics=self.metrics)
        self.ingestor = Ingestor(self.session_factory, metrics=IngestMetrics(), snapshot_dir=self.tmp_path / "snaps")

    def send(self, seal: str, count: int) -> None:
        for _ in range(count):
            one = self.seals[seal]
            self.ingestor.ingest([message(one.event_topic, one.event(EventType.HEARTBEAT, {"armed": True}))])

    def size(self) -> int:
        with self.session_factory() as session:
            return log.tree_size(session)

    def latest(self) -> tuple[int, bytes]:
        with self.session_factory() as session:
            row = log.latest_checkpoint(session)
            assert row is not None
            return row.tree_size, row.root_hash

    def recorded(self) -> dict[str, object]:
        path = signed_record.record_path(self.key.path or Path())
        data: dict[str, object] = json.loads(path.read_text(encoding="utf-8"))
        return data


def test_b_after_a_restore_no_checkpoint_inconsistent_with_the_published_one_is_signed(
    database_url: str, engine: Engine, session_factory: SessionFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    court = Court(session_factory, tmp_path, tmp_path / "log.key")
    court.send("seal-a", 3)
    first = court.checkpointer.run_once()
    assert first is not None
    restore = backup(engine, database_url, tmp_path)
    court.send("seal-a", 2)
    published = court.checkpointer.run_once()  # handed out in a bundle, say
    assert published == first + 2
    published_root = court.latest()[1]

    restore()  # the last commits are lost
    court.send("seal-b", 1)  # fewer leaves than the published checkpoint
    with caplog.at_level(logging.ERROR, logger="server.evidence.log"):
        assert court.checkpointer.run_once() is None
    assert f"fewer than the checkpoint of {published} leaves" in caplog.text
    assert court.metrics.checkpoints_refused() == {"smaller": 1}

    court.send("seal-b", 3)  # other leaves at the lost indices, and more: a bigger tree that forks
    assert court.size() > published
    caplog.clear()
    with caplog.at_level(logging.ERROR, logger="server.evidence.log"):
        assert court.checkpointer.run_once() is None
    assert "another root at size" in caplog.text
    assert court.metrics.checkpoints_refused() == {"smaller": 1, "forked": 1}
    assert court.latest()[0] == first  # nothing signed since the restore
    record = signed_record.record_of(tmp_path / "log.key")
    assert record.refused is not None  # what the health check reports
    with session_factory() as session, pytest.raises(CheckpointRefused):  # an export's checkpoint too
        log.make_checkpoint(session, court.key)
    assert court.recorded()["tree_size"] == published  # the record still holds the published checkpoint

    court.start(tmp_path / "log.key")  # a restart does not forget it
    assert court.checkpointer.run_once() is None
    assert court.metrics.checkpoints_refused() == {"forked": 1}
    with session_factory() as session:
        assert log.root_hash(session, published) != published_root
    with TestClient(create_app(make_settings(database_url, tmp_path), with_ingest=False)) as client:
        health = client.get("/api/health").json()  # the same log key file: this process's refusal
    assert (health["log"], health["status"]) == ("refused", "degraded")


def test_b_an_honest_restart_signs_on_from_the_record(
    database_url: str, engine: Engine, session_factory: SessionFactory, tmp_path: Path
) -> None:
    court = Court(session_factory, tmp_path, tmp_path / "log.key")
    court.send("seal-a", 2)
    first = court.checkpointer.run_once()
    assert first is not None and court.recorded()["tree_size"] == first
    first_root = court.latest()[1]
    court.start(tmp_path / "log.key")  # no loss
    court.send("seal-a", 3)
    second = court.checkpointer.run_once()
    assert second == first + 3 and court.metrics.checkpoints_refused() == {}
    size, root = court.latest()
    assert court.recorded()["tree_size"] == size == second
    with session_factory() as session:
        verifier.verify_consistency(first, second, first_root, root, log.consistency_proof(session, first, second))


def test_b_a_missing_record_is_made_from_the_latest_checkpoint_row(
    database_url: str, engine: Engine, session_factory: SessionFactory, tmp_path: Path
) -> None:
    court = Court(session_factory, tmp_path, tmp_path / "log.key")
    court.send("seal-a", 2)
    signed = court.checkpointer.run_once()
    assert signed is not None
    record_file = signed_record.record_path(tmp_path / "log.key")
    assert record_file == tmp_path / "log.last-checkpoint"
    record_file.unlink()  # a court upgraded from before the record
    court.start(tmp_path / "log.key")
    assert court.checkpointer.run_once() is None  # nothing new to sign; the record is made all the same
    with session_factory() as session:
        row = log.latest_checkpoint(session)
        assert row is not None
        assert court.recorded() == {
            "origin": LOG_ORIGIN,
            "tree_size": signed,
            "root_hash": base64.b64encode(row.root_hash).decode("ascii"),
            "note": row.note,
        }
    restore = backup(engine, database_url, tmp_path)
    court.send("seal-a", 1)
    assert court.checkpointer.run_once() == signed + 1  # the first run with a record signs as before
    restore()
    court.send("seal-b", 2)  # the signed checkpoint of signed + 1 was lost, and another leaf took its index
    assert court.checkpointer.run_once() is None
    assert court.metrics.checkpoints_refused() == {"forked": 1}


def test_b_a_server_records_the_checkpoints_another_server_signed(
    database_url: str, engine: Engine, session_factory: SessionFactory, tmp_path: Path
) -> None:
    """Two servers on one database, each with its record (one machine each): the one that did not sign the lost
    checkpoint refuses too, once a round of its checkpointer has seen it."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    key_a = tmp_path / "a" / "log.key"
    court = Court(session_factory, tmp_path, key_a)
    court.send("seal-a", 2)
    assert court.checkpointer.run_once() is not None
    shutil.copyfile(key_a, tmp_path / "b" / "log.key")
    other = Checkpointer(session_factory, LogKey(tmp_path / "b" / "log.key", LOG_ORIGIN), interval_s=60)
    restore = backup(engine, database_url, tmp_path)
    court.send("seal-a", 2)
    published = court.checkpointer.run_once()  # signed by server a
    assert other.run_once() is None  # server b's round: nothing to sign, the checkpoint recorded
    restore()
    court.send("seal-c", 3)
    with pytest.raises(CheckpointRefused, match=f"checkpoint of {published} leaves recorded in {tmp_path / 'b'}"):
        with session_factory() as session:
            log.make_checkpoint(session, LogKey(tmp_path / "b" / "log.key", LOG_ORIGIN))
