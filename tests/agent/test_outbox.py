"""The durable outbox: seq and hash chain survive reopening; nothing is lost or reused; one process at a time."""

from __future__ import annotations

import sqlite3
import stat
from pathlib import Path

import pytest

from seal_agent.errors import OutboxError, OutboxLocked
from seal_agent.journal.outbox import Outbox
from seal_protocol import envelope_hash


def body(seq: int, prev_hash: str | None) -> bytes:
    return f"event {seq} after {prev_hash}".encode()


def test_seq_and_prev_hash_continue_after_reopen(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite"
    with Outbox(path) as outbox:
        first = outbox.append(body)
        second = outbox.append(body)
    assert (first.seq, second.seq) == (1, 2)
    assert second.data == f"event 2 after {envelope_hash(first.data)}".encode()
    with Outbox(path) as outbox:
        assert outbox.last_seq == 2
        assert outbox.last_hash == envelope_hash(second.data)
        third = outbox.append(body)
        assert third.seq == 3
        assert third.data == f"event 3 after {envelope_hash(second.data)}".encode()
        assert [e.seq for e in outbox.pending()] == [1, 2, 3]


def test_only_a_receipt_deletes_and_seq_is_never_reused(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.sqlite") as outbox:
        events = [outbox.append(body) for _ in range(3)]
        outbox.broker_acknowledged([1, 2, 3])  # the broker's PUBACKs only mark them
        assert outbox.depth() == 3 and outbox.unacknowledged_depth() == 0
        assert outbox.court_receipted([envelope_hash(b"other bytes")]) == []
        assert outbox.court_receipted([envelope_hash(e.data) for e in reversed(events)]) == [1, 2, 3]
        assert outbox.court_receipted([envelope_hash(events[0].data)]) == []  # a replayed receipt changes nothing
        assert outbox.depth() == 0
        assert outbox.append(body).seq == 4


def test_failed_build_commits_nothing(tmp_path: Path) -> None:
    def broken(seq: int, prev_hash: str | None) -> bytes:
        raise ValueError("cannot encode")

    with Outbox(tmp_path / "o.sqlite") as outbox:
        outbox.append(body)
        with pytest.raises(ValueError):
            outbox.append(broken, settings={"armed": "0"})
        assert outbox.setting("armed") is None
        assert outbox.depth() == 1
        assert outbox.append(body).seq == 2


def test_pending_is_in_seq_order_with_cursor_and_limit(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.sqlite") as outbox:
        for _ in range(10):
            outbox.append(body)
        [fourth] = outbox.pending(after=3, limit=1)
        outbox.court_receipted([envelope_hash(fourth.data)])
        assert [e.seq for e in outbox.pending(after=2, limit=4)] == [3, 5, 6, 7]
        assert [e.data for e in outbox.pending(limit=1)] == [body(1, None)]


def test_settings_change_with_the_event(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite"
    with Outbox(path) as outbox:
        outbox.append(body, settings={"armed": "0"})
    with Outbox(path) as outbox:
        assert outbox.setting("armed") == "0"


def test_one_process_at_a_time_and_private_files(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite"
    with Outbox(path):
        with pytest.raises(OutboxLocked):
            Outbox(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    Outbox(path).close()  # the lock is released on close


def test_sqlite_errors_surface_as_outbox_errors(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "outbox.db")
    outbox.close()  # every further use is a sqlite3.ProgrammingError underneath
    for read in (lambda: outbox.setting("armed"), lambda: outbox.last_seq, lambda: outbox.last_hash):
        with pytest.raises(OutboxError):
            read()


V1_SCHEMA = """
CREATE TABLE outbox (seq INTEGER PRIMARY KEY, data BLOB NOT NULL, created_at REAL NOT NULL);
CREATE TABLE snapshot_queue (qid INTEGER PRIMARY KEY AUTOINCREMENT, sha TEXT NOT NULL UNIQUE, created_at REAL NOT NULL);
CREATE TABLE snapshot_sent (sha TEXT PRIMARY KEY);
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
PRAGMA user_version=1;
"""


def test_an_outbox_of_schema_1_keeps_its_events_and_chain(tmp_path: Path) -> None:
    """An outbox left by the agent that deleted on PUBACK: what it still holds was never acknowledged; it stays,
    and receipts delete it; the chain goes on; its sent snapshots (only the broker took them) are queued again."""
    path = tmp_path / "outbox.sqlite"
    old = [body(1, None), body(2, envelope_hash(body(1, None)))]
    with sqlite3.connect(path) as db:
        db.executescript(V1_SCHEMA)
        db.executemany("INSERT INTO outbox VALUES (?, ?, 0)", [(1, old[0]), (2, old[1])])
        db.executemany("INSERT INTO meta VALUES (?, ?)", [("last_seq", "2"), ("last_hash", envelope_hash(old[1]))])
        db.execute("INSERT INTO snapshot_queue (sha, created_at) VALUES ('a', 0)")
        db.execute("INSERT INTO snapshot_sent VALUES ('b')")
    with Outbox(path) as outbox:
        assert [(e.seq, e.data) for e in outbox.pending()] == [(1, old[0]), (2, old[1])]
        assert outbox.append(body).data == f"event 3 after {envelope_hash(old[1])}".encode()
        assert outbox.queued_snapshots() == {"a", "b"} and outbox.receipted_snapshots() == set()
        assert outbox.queued_snapshots(broker_acknowledged=False) == {"a", "b"}
        assert outbox.court_receipted([envelope_hash(old[1])]) == [2]
    with Outbox(path) as outbox:  # opened again: already version 2, nothing migrated twice
        assert [e.seq for e in outbox.pending()] == [1, 3]
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone() == (2,)


def test_an_outbox_from_a_newer_agent_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite"
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA user_version=99")
    with pytest.raises(OutboxError, match="newer"):
        Outbox(path)
    Outbox(path.with_name("other.sqlite")).close()  # and the lock of the refused one was let go
    with pytest.raises(OutboxError, match="newer"):
        Outbox(path)
