"""A seal's connection stamps only grow, across restarts too (seal_agent.connection_stamps)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from seal_agent.connection_stamps import STAMP_FILE, ConnectionStamps
from seal_protocol.envelope import parse_ts

T0 = datetime(2026, 12, 6, 10, 30, 0, 123456, tzinfo=UTC)


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def test_stamps_follow_the_clock_and_never_go_back(tmp_path: Path) -> None:
    path, clock = tmp_path / STAMP_FILE, Clock(T0)
    stamps = ConnectionStamps(path, clock=clock)
    assert stamps.next() == "2026-12-06T10:30:00.123Z"
    assert path.read_text("ascii") == "2026-12-06T10:30:00.123Z\n"  # kept before it is returned
    assert stamps.next() == "2026-12-06T10:30:00.124Z"  # the same clock: 1 ms later
    clock.now = T0 + timedelta(minutes=1)
    assert stamps.next() == "2026-12-06T10:31:00.123Z"
    # A reboot restores a clock saved at 10:17, before NTP: the new process stamps after the last connection.
    clock.now = T0 - timedelta(minutes=13)
    again = ConnectionStamps(path, clock=clock)
    assert again.next() == "2026-12-06T10:31:00.124Z"
    assert again.next() == "2026-12-06T10:31:00.125Z"
    assert not (tmp_path / f"{STAMP_FILE}.tmp").exists()


def test_an_unreadable_stamp_is_ignored_and_replaced(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / STAMP_FILE
    path.write_bytes(b"\xff garbage")
    with caplog.at_level(logging.ERROR, logger="seal_agent.connection_stamps"):
        stamps = ConnectionStamps(path, clock=Clock(T0))
    assert caplog.records
    assert parse_ts(stamps.next()) == T0.replace(microsecond=123000)
    assert path.read_text("ascii").strip() == "2026-12-06T10:30:00.123Z"


def test_a_state_directory_that_cannot_be_written_still_gives_growing_stamps(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    stamps = ConnectionStamps(tmp_path / "missing" / STAMP_FILE, clock=Clock(T0))
    with caplog.at_level(logging.ERROR, logger="seal_agent.connection_stamps"):
        assert [stamps.next(), stamps.next()] == ["2026-12-06T10:30:00.123Z", "2026-12-06T10:30:00.124Z"]
    assert any("cannot keep the connection stamp" in r.getMessage() for r in caplog.records)


def test_a_kept_stamp_at_the_calendars_end_does_not_stop_the_agent(tmp_path: Path) -> None:
    """A file holding 9999-12-31T23:59:59.999Z (a clock that once read so, or a hand-edited file): 1 ms later does
    not exist, and the agent failed at every start (a hostile review)."""
    path = tmp_path / STAMP_FILE
    path.write_text("9999-12-31T23:59:59.999Z\n", "ascii")
    stamps = ConnectionStamps(path, clock=Clock(T0))
    assert stamps.next() == "9999-12-31T23:59:59.999Z"
    assert stamps.next() == "9999-12-31T23:59:59.999Z"
