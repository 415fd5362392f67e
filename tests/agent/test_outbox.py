"""The durable outbox: seq and hash chain survive reopening; nothing is lost or reused; one process at a time."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from seal_agent.errors import OutboxError, OutboxLocked
from seal_agent.outbox import Outbox
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


def test_ack_deletes_and_seq_is_never_reused(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.sqlite") as outbox:
        for _ in range(3):
            outbox.append(body)
        assert outbox.ack(1) and outbox.ack(2) and outbox.ack(3)
        assert not outbox.ack(3)
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
        outbox.ack(4)
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
