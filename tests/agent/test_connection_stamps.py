"""A seal's connection stamps only grow, across restarts too (seal_agent.connection_stamps)."""

from __future__ import annotations

import logging
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from seal_agent.connection_stamps import STAMP_FILE, UNKEPT_ROOM, ConnectionStamps
from seal_protocol import SealStatus
from seal_protocol.envelope import parse_ts
from seal_protocol.status import supersedes
from tests.agent.test_read_only_card import _fail, card  # noqa: F401 - the card fixture

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
    # A reboot restores a clock saved at 10:17, before NTP: the new process stamps after the last connection, and
    # after the room stamps held in memory only may have taken (UNKEPT_ROOM).
    clock.now = T0 - timedelta(minutes=13)
    again = ConnectionStamps(path, clock=clock)
    assert again.next() == "2026-12-06T10:31:01.124Z"
    assert again.next() == "2026-12-06T10:31:01.125Z"
    assert not (tmp_path / f"{STAMP_FILE}.tmp").exists()


def test_an_unreadable_stamp_is_ignored_and_replaced(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / STAMP_FILE
    path.write_bytes(b"\xff garbage")
    written = (T0 - timedelta(hours=1)).timestamp()
    os.utime(path, (written, written))  # written before the clock's now
    with caplog.at_level(logging.ERROR, logger="seal_agent.connection_stamps"):
        stamps = ConnectionStamps(path, clock=Clock(T0))
    assert caplog.records
    assert parse_ts(stamps.next()) == T0.replace(microsecond=123000)
    assert path.read_text("ascii").strip() == "2026-12-06T10:30:00.123Z"


@pytest.mark.parametrize(
    "garble", [b"2026-12-\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\n", b"\xff\xfe"]
)
def test_a_torn_stamp_file_still_stamps_after_its_last_write_when_the_clock_was_set_back(
    tmp_path: Path, garble: bytes
) -> None:
    """A stamp overwritten in place on a full disk and torn by a power cut (or a card that garbles the sector), then
    a reboot that restores a clock days old: the next connection's stamp must still follow the last one the court
    holds (that connection's Will), or the court orders this connection's ``online`` before it."""
    path, ahead = tmp_path / STAMP_FILE, T0 + timedelta(days=1)
    sent = ConnectionStamps(path, clock=Clock(ahead)).next()  # the court holds this connection's Will
    assert sent is not None
    with open(path, "r+b") as file:  # the next overwrite in place, torn
        file.write(garble)
    torn = (ahead + timedelta(seconds=30)).timestamp()
    os.utime(path, (torn, torn))  # the file's mtime: the seal's clock when it was written
    booted = ConnectionStamps(path, clock=Clock(T0 - timedelta(days=5)))  # a Pi's clock restored from long ago
    stamp = booted.next()
    assert stamp is not None and parse_ts(stamp) > parse_ts(sent)
    assert supersedes(SealStatus.ONLINE, parse_ts(stamp), SealStatus.OFFLINE.value, parse_ts(sent))


def full(path: Path) -> None:
    """Every write to ``path`` (a file the stamps make anew) meets ENOSPC, as on a full disk: it is /dev/full."""
    path.symlink_to("/dev/full")


def test_a_stamp_sent_on_a_full_disk_is_kept_in_place_and_a_reboot_stamps_after_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A hostile review: a full disk refused the temporary file, the stamp was sent unkept, and after a reboot with
    the clock set back the seal stamped its connection before the Will the court already held (shown offline)."""
    path, clock = tmp_path / STAMP_FILE, Clock(T0)
    stamps = ConnectionStamps(path, clock=clock)
    first = stamps.next()
    full(tmp_path / f"{STAMP_FILE}.tmp")  # the disk fills up: no room for a new file
    clock.now = T0 + timedelta(hours=5)
    with caplog.at_level(logging.WARNING, logger="seal_agent.connection_stamps"):
        sent = stamps.next()
    assert sent is not None and first is not None and parse_ts(sent) > parse_ts(first)
    assert path.read_text("ascii") == sent + "\n"  # written over the old stamp, in place
    assert any("kept in place" in r.getMessage() for r in caplog.records)
    assert not (tmp_path / f"{STAMP_FILE}.tmp").exists()  # what the failed file took is given back
    # A power cut; the Pi comes back with a clock saved at T0 + 1 h and connects before NTP answers.
    clock.now = T0 + timedelta(hours=1)
    after_reboot = ConnectionStamps(path, clock=clock).next()
    assert after_reboot is not None
    assert supersedes(SealStatus.ONLINE, parse_ts(after_reboot), "offline", parse_ts(sent))


def test_a_stamp_kept_in_place_cuts_off_what_a_longer_file_held(tmp_path: Path) -> None:
    path = tmp_path / STAMP_FILE
    path.write_text("2026-12-06T10:00:00.000Z\n" + "x" * 100, "ascii")  # not a stamp: ignored, and replaced
    written = (T0 - timedelta(minutes=30)).timestamp()
    os.utime(path, (written, written))  # written before the clock's now: the stamp follows the clock
    full(tmp_path / f"{STAMP_FILE}.tmp")
    assert ConnectionStamps(path, clock=Clock(T0)).next() == "2026-12-06T10:30:00.123Z"
    assert path.read_text("ascii") == "2026-12-06T10:30:00.123Z\n"


@pytest.mark.parametrize("where", ["full disk, no stamp file yet", "no state directory"])
def test_a_stamp_that_cannot_be_kept_is_not_given(tmp_path: Path, caplog: pytest.LogCaptureFixture, where: str) -> None:
    """A stamp kept nowhere must not be sent (docs/protocol.md, "Status"): None, logged; the next try may keep one."""
    if where == "no state directory":
        path = tmp_path / "missing" / STAMP_FILE
    else:
        path = tmp_path / STAMP_FILE
        full(tmp_path / f"{STAMP_FILE}.tmp")  # and in place there is nothing to write over
    stamps = ConnectionStamps(path, clock=Clock(T0))
    with caplog.at_level(logging.ERROR, logger="seal_agent.connection_stamps"):
        assert stamps.next() is None
    assert [r.getMessage() for r in caplog.records if "cannot keep the connection stamp" in r.getMessage()]
    assert not path.exists()
    if where == "no state directory":
        path.parent.mkdir()
    else:
        (tmp_path / f"{STAMP_FILE}.tmp").unlink(missing_ok=True)  # room again
    assert stamps.next() == "2026-12-06T10:30:00.123Z"
    assert path.read_text("ascii") == "2026-12-06T10:30:00.123Z\n"


def test_a_kept_stamp_at_the_calendars_end_does_not_stop_the_agent(tmp_path: Path) -> None:
    """A file holding 9999-12-31T23:59:59.999Z (a clock that once read so, or a hand-edited file): 1 ms later does
    not exist, and the agent failed at every start (a hostile review)."""
    path = tmp_path / STAMP_FILE
    path.write_text("9999-12-31T23:59:59.999Z\n", "ascii")
    stamps = ConnectionStamps(path, clock=Clock(T0))
    assert stamps.next() == "9999-12-31T23:59:59.999Z"
    assert stamps.next() == "9999-12-31T23:59:59.999Z"


@pytest.mark.skipif(os.geteuid() != 0, reason="mounts a loop device (needs root)")
def test_a_stamp_the_card_cannot_keep_is_held_in_memory_and_a_later_boot_stamps_after_it(
    card: Path,  # noqa: F811 - the fixture imported above
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A card gone read-only under a running seal: its next connections were stamped None and said no status, so the
    court never learnt of the fault. Now they are stamped after every stamp sent, held in memory (logged once), and a
    later boot with its clock set back (the card's last stamp read again) still stamps after them."""
    path, clock = card / STAMP_FILE, Clock(T0)
    stamps = ConnectionStamps(path, clock=clock)
    kept = stamps.next()
    assert kept is not None
    _fail(card)  # the kernel remounts the card read-only: no stamp can be written, in place or not
    clock.now = T0 + timedelta(hours=2)
    with caplog.at_level(logging.ERROR, logger="seal_agent.connection_stamps"):
        held = [stamps.next() for _ in range(3)]
    assert held == ["2026-12-06T10:30:00.124Z", "2026-12-06T10:30:00.125Z", "2026-12-06T10:30:00.126Z"]
    assert len([r for r in caplog.records if "held in memory" in r.getMessage()]) == 1  # once per outage
    assert path.read_text("ascii") == kept + "\n"

    # The Pi reboots (the card readable, as after fsck) with a clock restored from before the last connection.
    again = tmp_path / STAMP_FILE
    again.write_text(path.read_text("ascii"), "ascii")
    booted = ConnectionStamps(again, clock=Clock(T0 - timedelta(days=1))).next()
    assert booted is not None
    for stamp in held:  # the court may hold a held connection's Will (offline) or its online: both are superseded
        assert stamp is not None
        assert supersedes(SealStatus.ONLINE, parse_ts(booted), SealStatus.OFFLINE.value, parse_ts(stamp))


@pytest.mark.skipif(os.geteuid() != 0, reason="mounts a loop device (needs root)")
def test_stamps_held_in_memory_never_pass_the_room_a_later_boot_stamps_after(
    card: Path,  # noqa: F811 - the fixture imported above
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Past the room (1,000 connections 1 ms apart), a stamp held in memory could reach a later boot's: that
    connection says no status again, as one with no stamp ever kept."""
    path = card / STAMP_FILE
    stamps = ConnectionStamps(path, clock=Clock(T0))
    kept = stamps.next()
    assert kept is not None
    _fail(card)
    room = int(UNKEPT_ROOM / timedelta(milliseconds=1))
    with caplog.at_level(logging.ERROR, logger="seal_agent.connection_stamps"):
        held = [stamps.next() for _ in range(room)]
        assert stamps.next() is None
    assert held[-1] is not None and parse_ts(held[-1]) == parse_ts(kept) + UNKEPT_ROOM
    assert ConnectionStamps(path, clock=Clock(T0)).next() is None  # the card still read-only: a boot says nothing
    assert any("no room left after the last kept one" in r.getMessage() for r in caplog.records)


def test_restarts_in_a_loop_add_up_no_lead(tmp_path: Path) -> None:
    """Each process starts after the kept stamp + the room and keeps the stamp it started with: with a room longer
    than a restart takes, a seal restarting in a loop stamped further ahead of its clock at each start (60 s rooms,
    restarts 8 s apart: 468 s ahead after 10, past the court's 5-minute bound, where a dead connection's Will beats
    the live one's ``online``). A restart takes more than the room: the lead stays within it."""
    path, clock = tmp_path / STAMP_FILE, Clock(T0)
    for _ in range(50):
        stamp = ConnectionStamps(path, clock=clock).next()
        assert stamp is not None
        assert parse_ts(stamp) - clock.now <= UNKEPT_ROOM
        clock.now += timedelta(seconds=3)  # systemd's RestartSec=2 and the start itself
